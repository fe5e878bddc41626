"""What the chain says about each live deployment's worker (issue 23 item 3).

- ``reader``: one read of a worker's standing through allora-sdk's read-only client (``AlloraRPCClient(wallet=None)``,
  emissions v10 and bank queries over gRPC), and the network endpoints the platform reads from;
- ``store``: the workers' addresses and the observations in PostgreSQL (0014), with retention, and the derived
  state (eligibility, score against the topic's lowest, missed windows);
- ``poller``: the reader run inside ``serve`` on its own thread and event loop, one leader among replicas;
- ``metrics``: the ``allora_chain_*`` series the server exports on ``/metrics``.
"""
