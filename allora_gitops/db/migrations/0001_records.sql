-- 0001: the records the platform keeps about what it published.
--
-- Forward-only; applied by allora_gitops.db.migrate.MigrationRunner inside one transaction.
-- Never edit this file once released: the runner refuses a database whose applied checksum differs.
--
-- Wallet secrets never belong here. Deployments store only the *name* of the Kubernetes Secret or
-- ExternalSecret that holds the wallet, and every free-text column is checked against what a secret
-- looks like: a BIP-39 mnemonic (12+ consecutive words of the English list) or a 64-hex private key.

-- The BIP-39 English word list (public, 2048 words), as jsonb keys for a binary-search lookup.
CREATE FUNCTION allora_bip39_words() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT '{
"abandon":1,"ability":1,"able":1,"about":1,"above":1,"absent":1,"absorb":1,"abstract":1,"absurd":1,"abuse":1,"access":1,"accident":1,
"account":1,"accuse":1,"achieve":1,"acid":1,"acoustic":1,"acquire":1,"across":1,"act":1,"action":1,"actor":1,"actress":1,"actual":1,
"adapt":1,"add":1,"addict":1,"address":1,"adjust":1,"admit":1,"adult":1,"advance":1,"advice":1,"aerobic":1,"affair":1,"afford":1,
"afraid":1,"again":1,"age":1,"agent":1,"agree":1,"ahead":1,"aim":1,"air":1,"airport":1,"aisle":1,"alarm":1,"album":1,
"alcohol":1,"alert":1,"alien":1,"all":1,"alley":1,"allow":1,"almost":1,"alone":1,"alpha":1,"already":1,"also":1,"alter":1,
"always":1,"amateur":1,"amazing":1,"among":1,"amount":1,"amused":1,"analyst":1,"anchor":1,"ancient":1,"anger":1,"angle":1,"angry":1,
"animal":1,"ankle":1,"announce":1,"annual":1,"another":1,"answer":1,"antenna":1,"antique":1,"anxiety":1,"any":1,"apart":1,"apology":1,
"appear":1,"apple":1,"approve":1,"april":1,"arch":1,"arctic":1,"area":1,"arena":1,"argue":1,"arm":1,"armed":1,"armor":1,
"army":1,"around":1,"arrange":1,"arrest":1,"arrive":1,"arrow":1,"art":1,"artefact":1,"artist":1,"artwork":1,"ask":1,"aspect":1,
"assault":1,"asset":1,"assist":1,"assume":1,"asthma":1,"athlete":1,"atom":1,"attack":1,"attend":1,"attitude":1,"attract":1,"auction":1,
"audit":1,"august":1,"aunt":1,"author":1,"auto":1,"autumn":1,"average":1,"avocado":1,"avoid":1,"awake":1,"aware":1,"away":1,
"awesome":1,"awful":1,"awkward":1,"axis":1,"baby":1,"bachelor":1,"bacon":1,"badge":1,"bag":1,"balance":1,"balcony":1,"ball":1,
"bamboo":1,"banana":1,"banner":1,"bar":1,"barely":1,"bargain":1,"barrel":1,"base":1,"basic":1,"basket":1,"battle":1,"beach":1,
"bean":1,"beauty":1,"because":1,"become":1,"beef":1,"before":1,"begin":1,"behave":1,"behind":1,"believe":1,"below":1,"belt":1,
"bench":1,"benefit":1,"best":1,"betray":1,"better":1,"between":1,"beyond":1,"bicycle":1,"bid":1,"bike":1,"bind":1,"biology":1,
"bird":1,"birth":1,"bitter":1,"black":1,"blade":1,"blame":1,"blanket":1,"blast":1,"bleak":1,"bless":1,"blind":1,"blood":1,
"blossom":1,"blouse":1,"blue":1,"blur":1,"blush":1,"board":1,"boat":1,"body":1,"boil":1,"bomb":1,"bone":1,"bonus":1,
"book":1,"boost":1,"border":1,"boring":1,"borrow":1,"boss":1,"bottom":1,"bounce":1,"box":1,"boy":1,"bracket":1,"brain":1,
"brand":1,"brass":1,"brave":1,"bread":1,"breeze":1,"brick":1,"bridge":1,"brief":1,"bright":1,"bring":1,"brisk":1,"broccoli":1,
"broken":1,"bronze":1,"broom":1,"brother":1,"brown":1,"brush":1,"bubble":1,"buddy":1,"budget":1,"buffalo":1,"build":1,"bulb":1,
"bulk":1,"bullet":1,"bundle":1,"bunker":1,"burden":1,"burger":1,"burst":1,"bus":1,"business":1,"busy":1,"butter":1,"buyer":1,
"buzz":1,"cabbage":1,"cabin":1,"cable":1,"cactus":1,"cage":1,"cake":1,"call":1,"calm":1,"camera":1,"camp":1,"can":1,
"canal":1,"cancel":1,"candy":1,"cannon":1,"canoe":1,"canvas":1,"canyon":1,"capable":1,"capital":1,"captain":1,"car":1,"carbon":1,
"card":1,"cargo":1,"carpet":1,"carry":1,"cart":1,"case":1,"cash":1,"casino":1,"castle":1,"casual":1,"cat":1,"catalog":1,
"catch":1,"category":1,"cattle":1,"caught":1,"cause":1,"caution":1,"cave":1,"ceiling":1,"celery":1,"cement":1,"census":1,"century":1,
"cereal":1,"certain":1,"chair":1,"chalk":1,"champion":1,"change":1,"chaos":1,"chapter":1,"charge":1,"chase":1,"chat":1,"cheap":1,
"check":1,"cheese":1,"chef":1,"cherry":1,"chest":1,"chicken":1,"chief":1,"child":1,"chimney":1,"choice":1,"choose":1,"chronic":1,
"chuckle":1,"chunk":1,"churn":1,"cigar":1,"cinnamon":1,"circle":1,"citizen":1,"city":1,"civil":1,"claim":1,"clap":1,"clarify":1,
"claw":1,"clay":1,"clean":1,"clerk":1,"clever":1,"click":1,"client":1,"cliff":1,"climb":1,"clinic":1,"clip":1,"clock":1,
"clog":1,"close":1,"cloth":1,"cloud":1,"clown":1,"club":1,"clump":1,"cluster":1,"clutch":1,"coach":1,"coast":1,"coconut":1,
"code":1,"coffee":1,"coil":1,"coin":1,"collect":1,"color":1,"column":1,"combine":1,"come":1,"comfort":1,"comic":1,"common":1,
"company":1,"concert":1,"conduct":1,"confirm":1,"congress":1,"connect":1,"consider":1,"control":1,"convince":1,"cook":1,"cool":1,"copper":1,
"copy":1,"coral":1,"core":1,"corn":1,"correct":1,"cost":1,"cotton":1,"couch":1,"country":1,"couple":1,"course":1,"cousin":1,
"cover":1,"coyote":1,"crack":1,"cradle":1,"craft":1,"cram":1,"crane":1,"crash":1,"crater":1,"crawl":1,"crazy":1,"cream":1,
"credit":1,"creek":1,"crew":1,"cricket":1,"crime":1,"crisp":1,"critic":1,"crop":1,"cross":1,"crouch":1,"crowd":1,"crucial":1,
"cruel":1,"cruise":1,"crumble":1,"crunch":1,"crush":1,"cry":1,"crystal":1,"cube":1,"culture":1,"cup":1,"cupboard":1,"curious":1,
"current":1,"curtain":1,"curve":1,"cushion":1,"custom":1,"cute":1,"cycle":1,"dad":1,"damage":1,"damp":1,"dance":1,"danger":1,
"daring":1,"dash":1,"daughter":1,"dawn":1,"day":1,"deal":1,"debate":1,"debris":1,"decade":1,"december":1,"decide":1,"decline":1,
"decorate":1,"decrease":1,"deer":1,"defense":1,"define":1,"defy":1,"degree":1,"delay":1,"deliver":1,"demand":1,"demise":1,"denial":1,
"dentist":1,"deny":1,"depart":1,"depend":1,"deposit":1,"depth":1,"deputy":1,"derive":1,"describe":1,"desert":1,"design":1,"desk":1,
"despair":1,"destroy":1,"detail":1,"detect":1,"develop":1,"device":1,"devote":1,"diagram":1,"dial":1,"diamond":1,"diary":1,"dice":1,
"diesel":1,"diet":1,"differ":1,"digital":1,"dignity":1,"dilemma":1,"dinner":1,"dinosaur":1,"direct":1,"dirt":1,"disagree":1,"discover":1,
"disease":1,"dish":1,"dismiss":1,"disorder":1,"display":1,"distance":1,"divert":1,"divide":1,"divorce":1,"dizzy":1,"doctor":1,"document":1,
"dog":1,"doll":1,"dolphin":1,"domain":1,"donate":1,"donkey":1,"donor":1,"door":1,"dose":1,"double":1,"dove":1,"draft":1,
"dragon":1,"drama":1,"drastic":1,"draw":1,"dream":1,"dress":1,"drift":1,"drill":1,"drink":1,"drip":1,"drive":1,"drop":1,
"drum":1,"dry":1,"duck":1,"dumb":1,"dune":1,"during":1,"dust":1,"dutch":1,"duty":1,"dwarf":1,"dynamic":1,"eager":1,
"eagle":1,"early":1,"earn":1,"earth":1,"easily":1,"east":1,"easy":1,"echo":1,"ecology":1,"economy":1,"edge":1,"edit":1,
"educate":1,"effort":1,"egg":1,"eight":1,"either":1,"elbow":1,"elder":1,"electric":1,"elegant":1,"element":1,"elephant":1,"elevator":1,
"elite":1,"else":1,"embark":1,"embody":1,"embrace":1,"emerge":1,"emotion":1,"employ":1,"empower":1,"empty":1,"enable":1,"enact":1,
"end":1,"endless":1,"endorse":1,"enemy":1,"energy":1,"enforce":1,"engage":1,"engine":1,"enhance":1,"enjoy":1,"enlist":1,"enough":1,
"enrich":1,"enroll":1,"ensure":1,"enter":1,"entire":1,"entry":1,"envelope":1,"episode":1,"equal":1,"equip":1,"era":1,"erase":1,
"erode":1,"erosion":1,"error":1,"erupt":1,"escape":1,"essay":1,"essence":1,"estate":1,"eternal":1,"ethics":1,"evidence":1,"evil":1,
"evoke":1,"evolve":1,"exact":1,"example":1,"excess":1,"exchange":1,"excite":1,"exclude":1,"excuse":1,"execute":1,"exercise":1,"exhaust":1,
"exhibit":1,"exile":1,"exist":1,"exit":1,"exotic":1,"expand":1,"expect":1,"expire":1,"explain":1,"expose":1,"express":1,"extend":1,
"extra":1,"eye":1,"eyebrow":1,"fabric":1,"face":1,"faculty":1,"fade":1,"faint":1,"faith":1,"fall":1,"false":1,"fame":1,
"family":1,"famous":1,"fan":1,"fancy":1,"fantasy":1,"farm":1,"fashion":1,"fat":1,"fatal":1,"father":1,"fatigue":1,"fault":1,
"favorite":1,"feature":1,"february":1,"federal":1,"fee":1,"feed":1,"feel":1,"female":1,"fence":1,"festival":1,"fetch":1,"fever":1,
"few":1,"fiber":1,"fiction":1,"field":1,"figure":1,"file":1,"film":1,"filter":1,"final":1,"find":1,"fine":1,"finger":1,
"finish":1,"fire":1,"firm":1,"first":1,"fiscal":1,"fish":1,"fit":1,"fitness":1,"fix":1,"flag":1,"flame":1,"flash":1,
"flat":1,"flavor":1,"flee":1,"flight":1,"flip":1,"float":1,"flock":1,"floor":1,"flower":1,"fluid":1,"flush":1,"fly":1,
"foam":1,"focus":1,"fog":1,"foil":1,"fold":1,"follow":1,"food":1,"foot":1,"force":1,"forest":1,"forget":1,"fork":1,
"fortune":1,"forum":1,"forward":1,"fossil":1,"foster":1,"found":1,"fox":1,"fragile":1,"frame":1,"frequent":1,"fresh":1,"friend":1,
"fringe":1,"frog":1,"front":1,"frost":1,"frown":1,"frozen":1,"fruit":1,"fuel":1,"fun":1,"funny":1,"furnace":1,"fury":1,
"future":1,"gadget":1,"gain":1,"galaxy":1,"gallery":1,"game":1,"gap":1,"garage":1,"garbage":1,"garden":1,"garlic":1,"garment":1,
"gas":1,"gasp":1,"gate":1,"gather":1,"gauge":1,"gaze":1,"general":1,"genius":1,"genre":1,"gentle":1,"genuine":1,"gesture":1,
"ghost":1,"giant":1,"gift":1,"giggle":1,"ginger":1,"giraffe":1,"girl":1,"give":1,"glad":1,"glance":1,"glare":1,"glass":1,
"glide":1,"glimpse":1,"globe":1,"gloom":1,"glory":1,"glove":1,"glow":1,"glue":1,"goat":1,"goddess":1,"gold":1,"good":1,
"goose":1,"gorilla":1,"gospel":1,"gossip":1,"govern":1,"gown":1,"grab":1,"grace":1,"grain":1,"grant":1,"grape":1,"grass":1,
"gravity":1,"great":1,"green":1,"grid":1,"grief":1,"grit":1,"grocery":1,"group":1,"grow":1,"grunt":1,"guard":1,"guess":1,
"guide":1,"guilt":1,"guitar":1,"gun":1,"gym":1,"habit":1,"hair":1,"half":1,"hammer":1,"hamster":1,"hand":1,"happy":1,
"harbor":1,"hard":1,"harsh":1,"harvest":1,"hat":1,"have":1,"hawk":1,"hazard":1,"head":1,"health":1,"heart":1,"heavy":1,
"hedgehog":1,"height":1,"hello":1,"helmet":1,"help":1,"hen":1,"hero":1,"hidden":1,"high":1,"hill":1,"hint":1,"hip":1,
"hire":1,"history":1,"hobby":1,"hockey":1,"hold":1,"hole":1,"holiday":1,"hollow":1,"home":1,"honey":1,"hood":1,"hope":1,
"horn":1,"horror":1,"horse":1,"hospital":1,"host":1,"hotel":1,"hour":1,"hover":1,"hub":1,"huge":1,"human":1,"humble":1,
"humor":1,"hundred":1,"hungry":1,"hunt":1,"hurdle":1,"hurry":1,"hurt":1,"husband":1,"hybrid":1,"ice":1,"icon":1,"idea":1,
"identify":1,"idle":1,"ignore":1,"ill":1,"illegal":1,"illness":1,"image":1,"imitate":1,"immense":1,"immune":1,"impact":1,"impose":1,
"improve":1,"impulse":1,"inch":1,"include":1,"income":1,"increase":1,"index":1,"indicate":1,"indoor":1,"industry":1,"infant":1,"inflict":1,
"inform":1,"inhale":1,"inherit":1,"initial":1,"inject":1,"injury":1,"inmate":1,"inner":1,"innocent":1,"input":1,"inquiry":1,"insane":1,
"insect":1,"inside":1,"inspire":1,"install":1,"intact":1,"interest":1,"into":1,"invest":1,"invite":1,"involve":1,"iron":1,"island":1,
"isolate":1,"issue":1,"item":1,"ivory":1,"jacket":1,"jaguar":1,"jar":1,"jazz":1,"jealous":1,"jeans":1,"jelly":1,"jewel":1,
"job":1,"join":1,"joke":1,"journey":1,"joy":1,"judge":1,"juice":1,"jump":1,"jungle":1,"junior":1,"junk":1,"just":1,
"kangaroo":1,"keen":1,"keep":1,"ketchup":1,"key":1,"kick":1,"kid":1,"kidney":1,"kind":1,"kingdom":1,"kiss":1,"kit":1,
"kitchen":1,"kite":1,"kitten":1,"kiwi":1,"knee":1,"knife":1,"knock":1,"know":1,"lab":1,"label":1,"labor":1,"ladder":1,
"lady":1,"lake":1,"lamp":1,"language":1,"laptop":1,"large":1,"later":1,"latin":1,"laugh":1,"laundry":1,"lava":1,"law":1,
"lawn":1,"lawsuit":1,"layer":1,"lazy":1,"leader":1,"leaf":1,"learn":1,"leave":1,"lecture":1,"left":1,"leg":1,"legal":1,
"legend":1,"leisure":1,"lemon":1,"lend":1,"length":1,"lens":1,"leopard":1,"lesson":1,"letter":1,"level":1,"liar":1,"liberty":1,
"library":1,"license":1,"life":1,"lift":1,"light":1,"like":1,"limb":1,"limit":1,"link":1,"lion":1,"liquid":1,"list":1,
"little":1,"live":1,"lizard":1,"load":1,"loan":1,"lobster":1,"local":1,"lock":1,"logic":1,"lonely":1,"long":1,"loop":1,
"lottery":1,"loud":1,"lounge":1,"love":1,"loyal":1,"lucky":1,"luggage":1,"lumber":1,"lunar":1,"lunch":1,"luxury":1,"lyrics":1,
"machine":1,"mad":1,"magic":1,"magnet":1,"maid":1,"mail":1,"main":1,"major":1,"make":1,"mammal":1,"man":1,"manage":1,
"mandate":1,"mango":1,"mansion":1,"manual":1,"maple":1,"marble":1,"march":1,"margin":1,"marine":1,"market":1,"marriage":1,"mask":1,
"mass":1,"master":1,"match":1,"material":1,"math":1,"matrix":1,"matter":1,"maximum":1,"maze":1,"meadow":1,"mean":1,"measure":1,
"meat":1,"mechanic":1,"medal":1,"media":1,"melody":1,"melt":1,"member":1,"memory":1,"mention":1,"menu":1,"mercy":1,"merge":1,
"merit":1,"merry":1,"mesh":1,"message":1,"metal":1,"method":1,"middle":1,"midnight":1,"milk":1,"million":1,"mimic":1,"mind":1,
"minimum":1,"minor":1,"minute":1,"miracle":1,"mirror":1,"misery":1,"miss":1,"mistake":1,"mix":1,"mixed":1,"mixture":1,"mobile":1,
"model":1,"modify":1,"mom":1,"moment":1,"monitor":1,"monkey":1,"monster":1,"month":1,"moon":1,"moral":1,"more":1,"morning":1,
"mosquito":1,"mother":1,"motion":1,"motor":1,"mountain":1,"mouse":1,"move":1,"movie":1,"much":1,"muffin":1,"mule":1,"multiply":1,
"muscle":1,"museum":1,"mushroom":1,"music":1,"must":1,"mutual":1,"myself":1,"mystery":1,"myth":1,"naive":1,"name":1,"napkin":1,
"narrow":1,"nasty":1,"nation":1,"nature":1,"near":1,"neck":1,"need":1,"negative":1,"neglect":1,"neither":1,"nephew":1,"nerve":1,
"nest":1,"net":1,"network":1,"neutral":1,"never":1,"news":1,"next":1,"nice":1,"night":1,"noble":1,"noise":1,"nominee":1,
"noodle":1,"normal":1,"north":1,"nose":1,"notable":1,"note":1,"nothing":1,"notice":1,"novel":1,"now":1,"nuclear":1,"number":1,
"nurse":1,"nut":1,"oak":1,"obey":1,"object":1,"oblige":1,"obscure":1,"observe":1,"obtain":1,"obvious":1,"occur":1,"ocean":1,
"october":1,"odor":1,"off":1,"offer":1,"office":1,"often":1,"oil":1,"okay":1,"old":1,"olive":1,"olympic":1,"omit":1,
"once":1,"one":1,"onion":1,"online":1,"only":1,"open":1,"opera":1,"opinion":1,"oppose":1,"option":1,"orange":1,"orbit":1,
"orchard":1,"order":1,"ordinary":1,"organ":1,"orient":1,"original":1,"orphan":1,"ostrich":1,"other":1,"outdoor":1,"outer":1,"output":1,
"outside":1,"oval":1,"oven":1,"over":1,"own":1,"owner":1,"oxygen":1,"oyster":1,"ozone":1,"pact":1,"paddle":1,"page":1,
"pair":1,"palace":1,"palm":1,"panda":1,"panel":1,"panic":1,"panther":1,"paper":1,"parade":1,"parent":1,"park":1,"parrot":1,
"party":1,"pass":1,"patch":1,"path":1,"patient":1,"patrol":1,"pattern":1,"pause":1,"pave":1,"payment":1,"peace":1,"peanut":1,
"pear":1,"peasant":1,"pelican":1,"pen":1,"penalty":1,"pencil":1,"people":1,"pepper":1,"perfect":1,"permit":1,"person":1,"pet":1,
"phone":1,"photo":1,"phrase":1,"physical":1,"piano":1,"picnic":1,"picture":1,"piece":1,"pig":1,"pigeon":1,"pill":1,"pilot":1,
"pink":1,"pioneer":1,"pipe":1,"pistol":1,"pitch":1,"pizza":1,"place":1,"planet":1,"plastic":1,"plate":1,"play":1,"please":1,
"pledge":1,"pluck":1,"plug":1,"plunge":1,"poem":1,"poet":1,"point":1,"polar":1,"pole":1,"police":1,"pond":1,"pony":1,
"pool":1,"popular":1,"portion":1,"position":1,"possible":1,"post":1,"potato":1,"pottery":1,"poverty":1,"powder":1,"power":1,"practice":1,
"praise":1,"predict":1,"prefer":1,"prepare":1,"present":1,"pretty":1,"prevent":1,"price":1,"pride":1,"primary":1,"print":1,"priority":1,
"prison":1,"private":1,"prize":1,"problem":1,"process":1,"produce":1,"profit":1,"program":1,"project":1,"promote":1,"proof":1,"property":1,
"prosper":1,"protect":1,"proud":1,"provide":1,"public":1,"pudding":1,"pull":1,"pulp":1,"pulse":1,"pumpkin":1,"punch":1,"pupil":1,
"puppy":1,"purchase":1,"purity":1,"purpose":1,"purse":1,"push":1,"put":1,"puzzle":1,"pyramid":1,"quality":1,"quantum":1,"quarter":1,
"question":1,"quick":1,"quit":1,"quiz":1,"quote":1,"rabbit":1,"raccoon":1,"race":1,"rack":1,"radar":1,"radio":1,"rail":1,
"rain":1,"raise":1,"rally":1,"ramp":1,"ranch":1,"random":1,"range":1,"rapid":1,"rare":1,"rate":1,"rather":1,"raven":1,
"raw":1,"razor":1,"ready":1,"real":1,"reason":1,"rebel":1,"rebuild":1,"recall":1,"receive":1,"recipe":1,"record":1,"recycle":1,
"reduce":1,"reflect":1,"reform":1,"refuse":1,"region":1,"regret":1,"regular":1,"reject":1,"relax":1,"release":1,"relief":1,"rely":1,
"remain":1,"remember":1,"remind":1,"remove":1,"render":1,"renew":1,"rent":1,"reopen":1,"repair":1,"repeat":1,"replace":1,"report":1,
"require":1,"rescue":1,"resemble":1,"resist":1,"resource":1,"response":1,"result":1,"retire":1,"retreat":1,"return":1,"reunion":1,"reveal":1,
"review":1,"reward":1,"rhythm":1,"rib":1,"ribbon":1,"rice":1,"rich":1,"ride":1,"ridge":1,"rifle":1,"right":1,"rigid":1,
"ring":1,"riot":1,"ripple":1,"risk":1,"ritual":1,"rival":1,"river":1,"road":1,"roast":1,"robot":1,"robust":1,"rocket":1,
"romance":1,"roof":1,"rookie":1,"room":1,"rose":1,"rotate":1,"rough":1,"round":1,"route":1,"royal":1,"rubber":1,"rude":1,
"rug":1,"rule":1,"run":1,"runway":1,"rural":1,"sad":1,"saddle":1,"sadness":1,"safe":1,"sail":1,"salad":1,"salmon":1,
"salon":1,"salt":1,"salute":1,"same":1,"sample":1,"sand":1,"satisfy":1,"satoshi":1,"sauce":1,"sausage":1,"save":1,"say":1,
"scale":1,"scan":1,"scare":1,"scatter":1,"scene":1,"scheme":1,"school":1,"science":1,"scissors":1,"scorpion":1,"scout":1,"scrap":1,
"screen":1,"script":1,"scrub":1,"sea":1,"search":1,"season":1,"seat":1,"second":1,"secret":1,"section":1,"security":1,"seed":1,
"seek":1,"segment":1,"select":1,"sell":1,"seminar":1,"senior":1,"sense":1,"sentence":1,"series":1,"service":1,"session":1,"settle":1,
"setup":1,"seven":1,"shadow":1,"shaft":1,"shallow":1,"share":1,"shed":1,"shell":1,"sheriff":1,"shield":1,"shift":1,"shine":1,
"ship":1,"shiver":1,"shock":1,"shoe":1,"shoot":1,"shop":1,"short":1,"shoulder":1,"shove":1,"shrimp":1,"shrug":1,"shuffle":1,
"shy":1,"sibling":1,"sick":1,"side":1,"siege":1,"sight":1,"sign":1,"silent":1,"silk":1,"silly":1,"silver":1,"similar":1,
"simple":1,"since":1,"sing":1,"siren":1,"sister":1,"situate":1,"six":1,"size":1,"skate":1,"sketch":1,"ski":1,"skill":1,
"skin":1,"skirt":1,"skull":1,"slab":1,"slam":1,"sleep":1,"slender":1,"slice":1,"slide":1,"slight":1,"slim":1,"slogan":1,
"slot":1,"slow":1,"slush":1,"small":1,"smart":1,"smile":1,"smoke":1,"smooth":1,"snack":1,"snake":1,"snap":1,"sniff":1,
"snow":1,"soap":1,"soccer":1,"social":1,"sock":1,"soda":1,"soft":1,"solar":1,"soldier":1,"solid":1,"solution":1,"solve":1,
"someone":1,"song":1,"soon":1,"sorry":1,"sort":1,"soul":1,"sound":1,"soup":1,"source":1,"south":1,"space":1,"spare":1,
"spatial":1,"spawn":1,"speak":1,"special":1,"speed":1,"spell":1,"spend":1,"sphere":1,"spice":1,"spider":1,"spike":1,"spin":1,
"spirit":1,"split":1,"spoil":1,"sponsor":1,"spoon":1,"sport":1,"spot":1,"spray":1,"spread":1,"spring":1,"spy":1,"square":1,
"squeeze":1,"squirrel":1,"stable":1,"stadium":1,"staff":1,"stage":1,"stairs":1,"stamp":1,"stand":1,"start":1,"state":1,"stay":1,
"steak":1,"steel":1,"stem":1,"step":1,"stereo":1,"stick":1,"still":1,"sting":1,"stock":1,"stomach":1,"stone":1,"stool":1,
"story":1,"stove":1,"strategy":1,"street":1,"strike":1,"strong":1,"struggle":1,"student":1,"stuff":1,"stumble":1,"style":1,"subject":1,
"submit":1,"subway":1,"success":1,"such":1,"sudden":1,"suffer":1,"sugar":1,"suggest":1,"suit":1,"summer":1,"sun":1,"sunny":1,
"sunset":1,"super":1,"supply":1,"supreme":1,"sure":1,"surface":1,"surge":1,"surprise":1,"surround":1,"survey":1,"suspect":1,"sustain":1,
"swallow":1,"swamp":1,"swap":1,"swarm":1,"swear":1,"sweet":1,"swift":1,"swim":1,"swing":1,"switch":1,"sword":1,"symbol":1,
"symptom":1,"syrup":1,"system":1,"table":1,"tackle":1,"tag":1,"tail":1,"talent":1,"talk":1,"tank":1,"tape":1,"target":1,
"task":1,"taste":1,"tattoo":1,"taxi":1,"teach":1,"team":1,"tell":1,"ten":1,"tenant":1,"tennis":1,"tent":1,"term":1,
"test":1,"text":1,"thank":1,"that":1,"theme":1,"then":1,"theory":1,"there":1,"they":1,"thing":1,"this":1,"thought":1,
"three":1,"thrive":1,"throw":1,"thumb":1,"thunder":1,"ticket":1,"tide":1,"tiger":1,"tilt":1,"timber":1,"time":1,"tiny":1,
"tip":1,"tired":1,"tissue":1,"title":1,"toast":1,"tobacco":1,"today":1,"toddler":1,"toe":1,"together":1,"toilet":1,"token":1,
"tomato":1,"tomorrow":1,"tone":1,"tongue":1,"tonight":1,"tool":1,"tooth":1,"top":1,"topic":1,"topple":1,"torch":1,"tornado":1,
"tortoise":1,"toss":1,"total":1,"tourist":1,"toward":1,"tower":1,"town":1,"toy":1,"track":1,"trade":1,"traffic":1,"tragic":1,
"train":1,"transfer":1,"trap":1,"trash":1,"travel":1,"tray":1,"treat":1,"tree":1,"trend":1,"trial":1,"tribe":1,"trick":1,
"trigger":1,"trim":1,"trip":1,"trophy":1,"trouble":1,"truck":1,"true":1,"truly":1,"trumpet":1,"trust":1,"truth":1,"try":1,
"tube":1,"tuition":1,"tumble":1,"tuna":1,"tunnel":1,"turkey":1,"turn":1,"turtle":1,"twelve":1,"twenty":1,"twice":1,"twin":1,
"twist":1,"two":1,"type":1,"typical":1,"ugly":1,"umbrella":1,"unable":1,"unaware":1,"uncle":1,"uncover":1,"under":1,"undo":1,
"unfair":1,"unfold":1,"unhappy":1,"uniform":1,"unique":1,"unit":1,"universe":1,"unknown":1,"unlock":1,"until":1,"unusual":1,"unveil":1,
"update":1,"upgrade":1,"uphold":1,"upon":1,"upper":1,"upset":1,"urban":1,"urge":1,"usage":1,"use":1,"used":1,"useful":1,
"useless":1,"usual":1,"utility":1,"vacant":1,"vacuum":1,"vague":1,"valid":1,"valley":1,"valve":1,"van":1,"vanish":1,"vapor":1,
"various":1,"vast":1,"vault":1,"vehicle":1,"velvet":1,"vendor":1,"venture":1,"venue":1,"verb":1,"verify":1,"version":1,"very":1,
"vessel":1,"veteran":1,"viable":1,"vibrant":1,"vicious":1,"victory":1,"video":1,"view":1,"village":1,"vintage":1,"violin":1,"virtual":1,
"virus":1,"visa":1,"visit":1,"visual":1,"vital":1,"vivid":1,"vocal":1,"voice":1,"void":1,"volcano":1,"volume":1,"vote":1,
"voyage":1,"wage":1,"wagon":1,"wait":1,"walk":1,"wall":1,"walnut":1,"want":1,"warfare":1,"warm":1,"warrior":1,"wash":1,
"wasp":1,"waste":1,"water":1,"wave":1,"way":1,"wealth":1,"weapon":1,"wear":1,"weasel":1,"weather":1,"web":1,"wedding":1,
"weekend":1,"weird":1,"welcome":1,"west":1,"wet":1,"whale":1,"what":1,"wheat":1,"wheel":1,"when":1,"where":1,"whip":1,
"whisper":1,"wide":1,"width":1,"wife":1,"wild":1,"will":1,"win":1,"window":1,"wine":1,"wing":1,"wink":1,"winner":1,
"winter":1,"wire":1,"wisdom":1,"wise":1,"wish":1,"witness":1,"wolf":1,"woman":1,"wonder":1,"wood":1,"wool":1,"word":1,
"work":1,"world":1,"worry":1,"worth":1,"wrap":1,"wreck":1,"wrestle":1,"wrist":1,"write":1,"wrong":1,"yard":1,"year":1,
"yellow":1,"you":1,"young":1,"youth":1,"zebra":1,"zero":1,"zone":1,"zoo":1
}'::jsonb
$fn$;

-- Longest run of consecutive BIP-39 words in a text (words split on anything but letters).
CREATE FUNCTION allora_bip39_run(t text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    words jsonb := allora_bip39_words();
    w text;
    run integer := 0;
    best integer := 0;
BEGIN
    IF t IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH w IN ARRAY regexp_split_to_array(lower(t), '[^a-z]+') LOOP
        IF w <> '' AND words ? w THEN
            run := run + 1;
            best := greatest(best, run);
        ELSIF w <> '' THEN
            run := 0;
        END IF;
    END LOOP;
    RETURN best;
END
$fn$;

-- A run of 64 hex digits (optionally 0x-prefixed) that is not a labelled digest ("sha256:…").
CREATE FUNCTION allora_has_hex_key(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT coalesce(
    regexp_replace(t, 'sha256:[0-9A-Fa-f]{64}', '', 'g')
        ~ '(^|[^0-9A-Fa-f])(0[xX])?[0-9A-Fa-f]{64}([^0-9A-Fa-f]|$)',
    false)
$fn$;

-- True when a text looks like it carries a wallet secret. Used by CHECK constraints on free text.
CREATE FUNCTION allora_looks_like_secret(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT allora_has_hex_key(t) OR allora_bip39_run(t) >= 12
$fn$;

-- What the records API stores instead of a secret-looking substring (free text only: error messages,
-- predictions). The CHECK constraints stay as the last line of defence.
CREATE FUNCTION allora_redact_secrets(t text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    cleaned text;
BEGIN
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    cleaned := regexp_replace(t, '(^|[^0-9A-Fa-f:])(0[xX])?[0-9A-Fa-f]{64}(?![0-9A-Fa-f])', '\1[redacted]', 'g');
    IF allora_looks_like_secret(cleaned) THEN
        RETURN '[redacted: the text looked like a wallet secret]';
    END IF;
    RETURN cleaned;
END
$fn$;

-- updated_at is the database's job, so no client can forget it.
CREATE FUNCTION allora_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- One row per archive the platform stored: name + version identify it, sha256 pins its bytes.
CREATE TABLE model_bundles (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text        NOT NULL,
    version         text        NOT NULL,
    sha256          text        NOT NULL,
    size_bytes      bigint      NOT NULL,
    archive_url     text        NOT NULL,
    python_version  text        NOT NULL,
    manifest        jsonb       NOT NULL,
    published_by    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_bundles_name_version_key UNIQUE (name, version),
    CONSTRAINT model_bundles_name_format CHECK (name ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(name) <= 53),
    CONSTRAINT model_bundles_version_format CHECK (
        version ~ '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
        AND length(version) <= 64),
    CONSTRAINT model_bundles_sha256_format CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT model_bundles_size_positive CHECK (size_bytes > 0),
    -- content-addressed: the URL names the digest, and carries no credentials
    CONSTRAINT model_bundles_archive_url_format CHECK (
        archive_url ~ '^(file|s3)://'
        AND strpos(archive_url, sha256) > 0
        AND archive_url !~ '^[a-z0-9+]+://[^/]*@'
        AND NOT allora_looks_like_secret(replace(archive_url, sha256, ''))),
    CONSTRAINT model_bundles_python_version_format CHECK (python_version ~ '^3\.[0-9]{1,2}$'),
    CONSTRAINT model_bundles_manifest_matches CHECK (
        jsonb_typeof(manifest) = 'object'
        AND manifest->>'name' = name
        AND manifest->>'version' = version
        AND NOT allora_looks_like_secret(manifest::text)),
    CONSTRAINT model_bundles_published_by_text CHECK (
        published_by IS NULL OR (length(published_by) BETWEEN 1 AND 200 AND NOT allora_looks_like_secret(published_by)))
);
CREATE INDEX model_bundles_sha256_idx ON model_bundles (sha256);
CREATE INDEX model_bundles_created_at_idx ON model_bundles (created_at DESC);
CREATE TRIGGER model_bundles_touch BEFORE UPDATE ON model_bundles
    FOR EACH ROW EXECUTE FUNCTION allora_touch_updated_at();

-- One row per publish of a bundle to a network through a GitOps repository.
-- Status: pending → committed → synced / failed / retired (see allora_deployment_transition).
CREATE TABLE deployments (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    bundle_id           uuid        NOT NULL REFERENCES model_bundles (id) ON DELETE RESTRICT,
    network             text        NOT NULL,
    topic_id            bigint      NOT NULL,
    fee_tier            text        NOT NULL DEFAULT 'STANDARD',
    status              text        NOT NULL DEFAULT 'pending',
    status_message      text,
    container_image     text,
    wallet_secret_kind  text        NOT NULL DEFAULT 'Secret',
    wallet_secret_name  text        NOT NULL,
    repo_url            text        NOT NULL,
    repo_branch         text        NOT NULL,
    commit_sha          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deployments_network_format CHECK (network ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(network) <= 63),
    CONSTRAINT deployments_topic_id_positive CHECK (topic_id > 0),
    CONSTRAINT deployments_fee_tier_valid CHECK (fee_tier IN ('ECO', 'STANDARD', 'PRIORITY')),
    CONSTRAINT deployments_status_valid CHECK (status IN ('pending', 'committed', 'synced', 'failed', 'retired')),
    CONSTRAINT deployments_committed_has_commit CHECK (status NOT IN ('committed', 'synced') OR commit_sha IS NOT NULL),
    CONSTRAINT deployments_status_message_text CHECK (
        status_message IS NULL OR (length(status_message) <= 4000 AND NOT allora_looks_like_secret(status_message))),
    CONSTRAINT deployments_container_image_format CHECK (
        container_image IS NULL OR (
            container_image ~ '^[a-z0-9][a-z0-9._/:-]*(@sha256:[0-9a-f]{64})?$'
            AND length(container_image) <= 512
            AND NOT allora_looks_like_secret(container_image))),
    -- only a reference to where the wallet lives, never the wallet
    CONSTRAINT deployments_wallet_secret_kind_valid CHECK (wallet_secret_kind IN ('Secret', 'ExternalSecret')),
    CONSTRAINT deployments_wallet_secret_name_format CHECK (
        wallet_secret_name ~ '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
        AND length(wallet_secret_name) <= 253
        AND NOT allora_looks_like_secret(wallet_secret_name)),
    CONSTRAINT deployments_repo_url_format CHECK (
        repo_url <> '' AND length(repo_url) <= 2048
        AND repo_url !~ '^[a-zA-Z0-9+.-]+://[^/@]*:[^/@]*@'
        AND repo_url !~ '\s'
        AND NOT allora_looks_like_secret(repo_url)),
    CONSTRAINT deployments_repo_branch_format CHECK (
        repo_branch ~ '^[A-Za-z0-9._/-]+$' AND repo_branch !~ '(^/|/$|\.\.|//|\.lock$)' AND length(repo_branch) <= 255
        AND NOT allora_looks_like_secret(repo_branch)),
    CONSTRAINT deployments_commit_sha_format CHECK (commit_sha IS NULL OR commit_sha ~ '^([0-9a-f]{40}|[0-9a-f]{64})$')
);
CREATE INDEX deployments_bundle_network_idx ON deployments (bundle_id, network);
CREATE INDEX deployments_network_status_idx ON deployments (network, status);
CREATE INDEX deployments_updated_at_idx ON deployments (updated_at DESC);
CREATE TRIGGER deployments_touch BEFORE UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION allora_touch_updated_at();

-- The status machine, enforced here too so that a hand-written UPDATE cannot skip a step.
CREATE FUNCTION allora_deployment_transition() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF (OLD.status, NEW.status) IN (
        ('pending', 'committed'), ('pending', 'failed'), ('pending', 'retired'),
        ('committed', 'synced'), ('committed', 'failed'), ('committed', 'retired'),
        ('synced', 'failed'), ('synced', 'retired'),
        ('failed', 'retired')
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'illegal deployment status change % -> %', OLD.status, NEW.status
        USING ERRCODE = 'check_violation', CONSTRAINT = 'deployments_status_transition';
END
$fn$;
CREATE TRIGGER deployments_status_transition BEFORE UPDATE OF status ON deployments
    FOR EACH ROW EXECUTE FUNCTION allora_deployment_transition();

-- What each deployment's worker submitted (or failed to) for a nonce.
CREATE TABLE submission_results (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id   uuid        NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    nonce           bigint      NOT NULL,
    prediction      text,
    tx_hash         text,
    status          text        NOT NULL,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT submission_results_nonce_nonnegative CHECK (nonce >= 0),
    CONSTRAINT submission_results_status_valid CHECK (status IN ('success', 'error', 'timeout')),
    CONSTRAINT submission_results_success_has_prediction CHECK (status <> 'success' OR prediction IS NOT NULL),
    CONSTRAINT submission_results_failure_has_error CHECK (status NOT IN ('error', 'timeout') OR error_message IS NOT NULL),
    CONSTRAINT submission_results_prediction_text CHECK (
        prediction IS NULL OR (length(prediction) <= 10000 AND NOT allora_looks_like_secret(prediction))),
    CONSTRAINT submission_results_tx_hash_format CHECK (tx_hash IS NULL OR tx_hash ~ '^[0-9A-F]{64}$'),
    CONSTRAINT submission_results_error_message_text CHECK (
        error_message IS NULL OR (length(error_message) <= 4000 AND NOT allora_looks_like_secret(error_message)))
);
CREATE INDEX submission_results_deployment_created_idx ON submission_results (deployment_id, created_at DESC);
CREATE INDEX submission_results_deployment_nonce_idx ON submission_results (deployment_id, nonce);
