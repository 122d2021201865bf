"""A small English grammar that draws varied, plausible sentences for a synthetic speech corpus.

Fine-tuning a pretrained ASR model on a handful of repeated phrases teaches it to memorise
them; a broad vocabulary (well over a thousand word forms) in statements, questions,
imperatives and descriptions, with agreement, several tenses, numbers written as words, places
and times, makes the model listen instead. Sentences are lowercase letters, apostrophes and
spaces only: what a transcript of the spoken words holds.

Verbs say which objects fit them (see ``VERBS``), so most sentences make sense ("she sliced
the bread", not "she sliced the bridge"). Everything is drawn from the numpy generator given,
so a seed fixes the sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# (singular, plural) pairs.
PEOPLE = tuple(tuple(pair.split("/")) for pair in """
teacher/teachers doctor/doctors nurse/nurses farmer/farmers driver/drivers student/students child/children
man/men woman/women boy/boys girl/girls baker/bakers painter/painters singer/singers writer/writers
lawyer/lawyers pilot/pilots soldier/soldiers waiter/waiters cook/cooks artist/artists dancer/dancers
player/players neighbor/neighbors friend/friends cousin/cousins brother/brothers sister/sisters uncle/uncles
aunt/aunts mother/mothers father/fathers grandmother/grandmothers grandfather/grandfathers baby/babies
engineer/engineers scientist/scientists manager/managers worker/workers visitor/visitors stranger/strangers
guest/guests customer/customers officer/officers captain/captains king/kings queen/queens prince/princes
princess/princesses fisherman/fishermen mechanic/mechanics plumber/plumbers gardener/gardeners
librarian/librarians dentist/dentists clerk/clerks tourist/tourists traveler/travelers musician/musicians
actor/actors author/authors coach/coaches judge/judges sailor/sailors shepherd/shepherds hunter/hunters
carpenter/carpenters tailor/tailors barber/barbers professor/professors director/directors reporter/reporters
photographer/photographers pupil/pupils teenager/teenagers lady/ladies gentleman/gentlemen boss/bosses
partner/partners passenger/passengers nephew/nephews niece/nieces husband/husbands wife/wives
""".split())

# Who someone's someone may be ("my teacher's brother").
RELATIONS = tuple("""
friend brother sister mother father boss neighbor cousin teacher doctor wife husband partner son daughter
uncle aunt grandmother grandfather dog cat
""".split())

ANIMALS = tuple(tuple(pair.split("/")) for pair in """
dog/dogs cat/cats horse/horses cow/cows sheep/sheep pig/pigs goat/goats hen/hens duck/ducks rabbit/rabbits
mouse/mice bird/birds fox/foxes wolf/wolves bear/bears lion/lions tiger/tigers elephant/elephants
monkey/monkeys deer/deer frog/frogs snake/snakes owl/owls eagle/eagles parrot/parrots turtle/turtles
squirrel/squirrels kitten/kittens puppy/puppies donkey/donkeys camel/camels giraffe/giraffes zebra/zebras
whale/whales dolphin/dolphins bee/bees spider/spiders goose/geese swan/swans pony/ponies hamster/hamsters
""".split())

THINGS = tuple(tuple(pair.split("/")) for pair in """
box/boxes chair/chairs table/tables cup/cups plate/plates bottle/bottles bag/bags key/keys phone/phones
ticket/tickets lamp/lamps clock/clocks window/windows door/doors picture/pictures camera/cameras ball/balls
toy/toys pen/pens pencil/pencils notebook/notebooks blanket/blankets pillow/pillows basket/baskets
bucket/buckets ladder/ladders hammer/hammers knife/knives spoon/spoons fork/forks glass/glasses
mirror/mirrors umbrella/umbrellas wallet/wallets watch/watches ring/rings necklace/necklaces
suitcase/suitcases envelope/envelopes package/packages present/presents candle/candles computer/computers
laptop/laptops radio/radios television/televisions guitar/guitars piano/pianos drum/drums violin/violins
kite/kites tent/tents rope/ropes brush/brushes towel/towels bowl/bowls pot/pots pan/pans kettle/kettles
jar/jars photo/photos painting/paintings drawing/drawings poster/posters flag/flags flower/flowers
plant/plants stone/stones shell/shells feather/feathers coin/coins bench/benches desk/desks shelf/shelves
drawer/drawers sofa/sofas bed/beds carpet/carpets curtain/curtains fence/fences gate/gates wheel/wheels
engine/engines battery/batteries bulb/bulbs cable/cables screen/screens keyboard/keyboards button/buttons
ribbon/ribbons balloon/balloons helmet/helmets tool/tools machine/machines bell/bells vase/vases
statue/statues trophy/trophies medal/medals puzzle/puzzles parcel/parcels stamp/stamps sticker/stickers
""".split())

CLOTHES = tuple(tuple(pair.split("/")) for pair in """
coat/coats hat/hats shoe/shoes jacket/jackets sweater/sweaters scarf/scarves glove/gloves sock/socks
boot/boots shirt/shirts dress/dresses skirt/skirts tie/ties belt/belts uniform/uniforms cap/caps
vest/vests apron/aprons raincoat/raincoats
""".split())

# Things one reads, writes, explains or answers.
WRITINGS = tuple(tuple(pair.split("/")) for pair in """
book/books letter/letters map/maps newspaper/newspapers magazine/magazines note/notes message/messages
report/reports list/lists story/stories poem/poems email/emails recipe/recipes menu/menus article/articles
postcard/postcards novel/novels diary/diaries contract/contracts form/forms question/questions
answer/answers plan/plans idea/ideas problem/problems lesson/lessons speech/speeches chapter/chapters
page/pages song/songs joke/jokes address/addresses schedule/schedules invitation/invitations
""".split())

VEHICLES = tuple(tuple(pair.split("/")) for pair in """
car/cars bicycle/bicycles bus/buses truck/trucks boat/boats train/trains motorcycle/motorcycles
taxi/taxis van/vans tractor/tractors scooter/scooters ship/ships
""".split())

FRUITS = tuple(tuple(pair.split("/")) for pair in """
apple/apples banana/bananas orange/oranges egg/eggs potato/potatoes tomato/tomatoes onion/onions
carrot/carrots lemon/lemons cookie/cookies sandwich/sandwiches pie/pies cake/cakes peach/peaches
pear/pears cherry/cherries strawberry/strawberries melon/melons muffin/muffins pancake/pancakes
cucumber/cucumbers pepper/peppers
""".split())

MASS_FOODS = tuple("""
bread soup rice cheese butter pasta salad chocolate honey jam sugar salt flour meat fish pizza porridge
yogurt cereal popcorn toast cabbage garlic spinach beef chicken
""".split())

DRINKS = tuple("coffee tea milk juice water lemonade cocoa wine".split())
CONTAINERS = (("cup", "cups"), ("glass", "glasses"), ("bottle", "bottles"), ("jug", "jugs"))

PLACES = tuple("""
kitchen garden station park library market school office hospital museum bank bakery restaurant hotel
airport beach river lake forest mountain village city church bridge farm factory shop supermarket theater
stadium harbor island castle cafe garage basement attic bedroom bathroom hallway classroom playground
cinema street corner square tower zoo field valley cave pool gym studio laboratory courtyard balcony
pharmacy
""".split()) + ("post office",)
CITIES = tuple("""
london paris boston chicago tokyo berlin madrid rome dublin sydney toronto denver seattle vienna oslo
cairo lisbon prague athens moscow dallas miami houston glasgow manchester edinburgh
""".split())
LOCATIVES = ("in", "at", "near", "behind", "outside", "beside", "next to", "in front of", "across from",
             "close to", "far from", "around")
DIRECTIONS = ("to", "into", "toward", "past", "through", "around", "across", "along", "out of")

NAMES = tuple("""
anna ben carla david emma frank grace henry isabel jack kate leo maria nick olivia peter rachel sam tom
william zoe alice bob charlie daniel ella fred george hannah ian julia kevin laura mark nora oscar paul
ruth simon tina vincent wendy adam bella chris diana eric fiona greg helen isaac james karen lucy mike
nathan oliver paula rose steve susan tony lisa martin sarah john mary robert linda michael jennifer
richard thomas elizabeth joseph barbara charles margaret edward dorothy andrew sophie lily max ruby
jacob chloe ethan mia noah ava liam amy
""".split())

GENERAL_ADJECTIVES = tuple("""
big small old little strange famous beautiful lovely wonderful terrible ordinary unusual special perfect
noisy quiet tiny huge pretty heavy light dark bright clean dirty
""".split())
PEOPLE_ADJECTIVES = tuple("""
young tall happy sad angry tired hungry thirsty busy lazy clever kind friendly funny serious rich poor
strong weak brave shy polite rude honest careful careless nervous proud calm lonely gentle cheerful
curious patient generous grumpy sleepy excited worried
""".split())
THING_ADJECTIVES = tuple("""
new long short empty full hot cold warm cool soft hard cheap expensive wet dry simple modern ancient
wooden golden silver plastic metal round square flat narrow wide deep thick thin smooth rough sharp broken
shiny dusty rusty sticky fancy plain useful comfortable colorful red blue green yellow purple pink brown
black white gray
""".split())
FOOD_ADJECTIVES = tuple("""
fresh sweet sour bitter salty spicy delicious tasty warm cold hot cheap expensive homemade burnt frozen
""".split())
WRITING_ADJECTIVES = ("short", "long", "new", "old", "funny", "sad", "important", "interesting", "boring",
                      "difficult", "easy")
PLACE_ADJECTIVES = tuple("""
crowded peaceful busy quiet empty noisy beautiful old new small big famous dark bright cold warm modern
ancient lovely
""".split())
WEATHER = tuple("sunny rainy windy cloudy foggy snowy cold warm hot freezing lovely wet dry".split())

MANNER_ADVERBS = tuple("""
quickly slowly carefully quietly loudly happily sadly easily badly well early late suddenly gently
patiently politely calmly nervously proudly eagerly softly firmly safely honestly bravely angrily
cheerfully kindly neatly together alone again finally silently clearly
""".split())
FREQUENCY_ADVERBS = ("always", "usually", "often", "sometimes", "rarely", "never", "seldom")

DAYS = tuple("monday tuesday wednesday thursday friday saturday sunday".split())
MONTHS = tuple("january february march april may june july august september october november december".split())
PARTS_OF_DAY = ("in the morning", "in the afternoon", "in the evening", "at night", "before lunch",
                "after lunch", "before dinner", "after dinner", "after school", "after work", "before breakfast")

ONES = tuple("""
zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
seventeen eighteen nineteen
""".split())
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

# Verbs: "base third-person past participle ing kinds". Kinds say what may follow:
#   t thing, c clothes, w writing, v vehicle, f food, d drink, p person, a animal, l place
#   (direct objects); i nothing (intransitive); m a motion to a place.
# An "A" lets an animal be the subject.
VERBS = tuple(tuple(line.split()) for line in """
buy buys bought bought buying tcwvfd
sell sells sold sold selling tcvfa
carry carries carried carried carrying tcfa
find finds found found finding tcwvpaA
lose loses lost lost losing tcw
bring brings brought brought bringing tcwfdp
take takes took taken taking tcwfd
move moves moved moved moving tvm
clean cleans cleaned cleaned cleaning tvli
wash washes washed washed washing tcva
fix fixes fixed fixed fixing tv
repair repairs repaired repaired repairing tvc
paint paints painted painted painting tvli
open opens opened opened opening tw
close closes closed closed closing tw
hide hides hid hidden hiding tcwfiA
drop drops dropped dropped dropping tcf
break breaks broke broken breaking t
borrow borrows borrowed borrowed borrowing tcwv
lend lends lent lent lending tcwv
keep keeps kept kept keeping tcwfa
need needs needed needed needing tcwvfdp
want wants wanted wanted wanting tcvfdA
like likes liked liked liking tcvfdpaA
love loves loved loved loving tcvfdpa
hate hates hated hated hating fdw
check checks checked checked checking tw
count counts counted counted counting ta
fold folds folded folded folding tcw
hold holds held held holding tfa
lift lifts lifted lifted lifting t
pack packs packed packed packing tcf
push pushes pushed pushed pushing tv
pull pulls pulled pulled pulling tvA
throw throws threw thrown throwing t
catch catches caught caught catching tvaA
use uses used used using tv
order orders ordered ordered ordering tfd
show shows showed shown showing tcw
send sends sent sent sending tw
return returns returned returned returning tcwvm
measure measures measured measured measuring t
touch touches touched touched touching ta
choose chooses chose chosen choosing tcf
share shares shared shared sharing tfdw
forget forgets forgot forgotten forgetting tcw
remember remembers remembered remembered remembering tpwl
see sees saw seen seeing tvpalA
watch watches watched watched watching paA
hear hears heard heard hearing paA
draw draws drew drawn drawing tpali
write writes wrote written writing wi
read reads read read reading wi
eat eats ate eaten eating fA
cook cooks cooked cooked cooking fi
bake bakes baked baked baking f
cut cuts cut cut cutting ft
taste tastes tasted tasted tasting fd
serve serves served served serving fd
prepare prepares prepared prepared preparing fdw
heat heats heated heated heating fd
slice slices sliced sliced slicing f
drink drinks drank drunk drinking dA
pour pours poured poured pouring d
spill spills spilled spilled spilling d
meet meets met met meeting p
call calls called called calling p
visit visits visited visited visiting pl
help helps helped helped helping p
thank thanks thanked thanked thanking p
invite invites invited invited inviting p
ask asks asked asked asking p
follow follows followed followed following paA
teach teaches taught taught teaching p
answer answers answered answered answering pw
trust trusts trusted trusted trusting p
miss misses missed missed missing pv
greet greets greeted greeted greeting p
ignore ignores ignored ignored ignoring pwA
surprise surprises surprised surprised surprising p
interview interviews interviewed interviewed interviewing p
hug hugs hugged hugged hugging pa
pay pays paid paid paying p
warn warns warned warned warning p
join joins joined joined joining p
believe believes believed believed believing p
understand understands understood understood understanding pw
notice notices noticed noticed noticing tpaA
feed feeds fed fed feeding ap
chase chases chased chased chasing avA
photograph photographs photographed photographed photographing apl
ride rides rode ridden riding v
drive drives drove driven driving vim
park parks parked parked parking v
rent rents rented rented renting v
steal steals stole stolen stealing tv
wear wears wore worn wearing c
mend mends mended mended mending c
iron irons ironed ironed ironing c
sew sews sewed sewn sewing c
sign signs signed signed signing w
print prints printed printed printing w
copy copies copied copied copying w
finish finishes finished finished finishing wf
translate translates translated translated translating w
edit edits edited edited editing w
publish publishes published published publishing w
explain explains explained explained explaining w
discuss discusses discussed discussed discussing w
describe describes described described describing tlwp
explore explores explored explored exploring lA
enter enters entered entered entering l
reach reaches reached reached reaching l
cross crosses crossed crossed crossing lA
search searches searched searched searching l
build builds built built building t
make makes made made making tf
plant plants planted planted planting f
collect collects collected collected collecting tw
deliver delivers delivered delivered delivering tw
wrap wraps wrapped wrapped wrapping t
burn burns burned burned burning tw
grow grows grew grown growing fiA
sleep sleeps slept slept sleeping iA
laugh laughs laughed laughed laughing i
smile smiles smiled smiled smiling i
run runs ran run running imA
walk walks walked walked walking imA
work works worked worked working i
swim swims swam swum swimming imA
dance dances danced danced dancing i
sing sings sang sung singing iA
wait waits waited waited waiting iA
rest rests rested rested resting iA
travel travels traveled traveled traveling im
shout shouts shouted shouted shouting i
listen listens listened listened listening iA
study studies studied studied studying iw
play plays played played playing iA
arrive arrives arrived arrived arriving i
leave leaves left left leaving il
stay stays stayed stayed staying iA
go goes went gone going m
come comes came come coming mA
fly flies flew flown flying imA
hurry hurries hurried hurried hurrying mA
climb climbs climbed climbed climbing ilA
jump jumps jumped jumped jumping iA
cry cries cried cried crying i
sit sits sat sat sitting iA
talk talks talked talked talking i
shop shops shopped shopped shopping i
relax relaxes relaxed relaxed relaxing i
exercise exercises exercised exercised exercising i
practice practices practiced practiced practicing i
whisper whispers whispered whispered whispering i
agree agrees agreed agreed agreeing i
complain complains complained complained complaining i
escape escapes escaped escaped escaping imA
disappear disappears disappeared disappeared disappearing iA
""".strip().splitlines())

TRANSITIVE_VERBS = tuple(v for v in VERBS if set(v[5]) & set("tcwvfdpal"))

PAST_TIMES = ("yesterday", "last night", "last week", "last month", "last year", "this morning",
              "a moment ago", "the day before yesterday", "last summer", "last winter")
FUTURE_TIMES = ("tomorrow", "next week", "next month", "next year", "tonight", "later", "soon",
                "the day after tomorrow", "next summer", "this weekend")
HABITUAL_TIMES = ("every day", "every morning", "every evening", "on weekends", "twice a week",
                  "once a month", "every summer", "every year")
NOW_TIMES = ("right now", "at the moment", "today", "this afternoon", "this evening")
MODALS = ("can", "could", "should", "might", "must", "would", "may")
NEGATIVE_MODALS = ("can't", "couldn't", "shouldn't", "might not", "mustn't", "wouldn't", "may not")
CONNECTIVES = ("and", "but", "because", "so", "while", "when", "although", "before", "after", "until")
CURRENCIES = ("dollars", "pounds", "euros")


def number_words(n: int) -> str:
    """0..999 in words, British style ("three hundred and twelve"), no hyphens."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_words covers 0..999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


@dataclass(frozen=True)
class Subject:
    """Words of a subject and how the verb agrees with it: person 1/2/3, plural or not."""

    words: tuple[str, ...]
    person: int
    plural: bool

    @property
    def third_singular(self) -> bool:
        return self.person == 3 and not self.plural


PRONOUN_SUBJECTS = (Subject(("i",), 1, False), Subject(("you",), 2, False), Subject(("he",), 3, False),
                    Subject(("she",), 3, False), Subject(("we",), 1, True), Subject(("they",), 3, True))
OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
POSSESSIVES = ("my", "your", "his", "her", "our", "their")


class SentenceGrammar:
    """Draws one sentence per call from ``rng``; see :func:`generate_sentence`."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    # -- drawing helpers -----------------------------------------------------------------
    def pick(self, options: Sequence):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def maybe(self, p: float, words: list[str]) -> list[str]:
        return words if self.chance(p) else []

    @staticmethod
    def article(next_word: str) -> str:
        """"a" or "an" by the sound of the next word (a uniform, an honest man)."""
        if next_word.startswith(("uni", "use", "eu")):
            return "a"
        return "an" if next_word[0] in "aeiou" or next_word.startswith(("hour", "honest")) else "a"

    # -- noun phrases --------------------------------------------------------------------
    def count_phrase(self, pairs: Sequence[tuple[str, str]], adjectives: Sequence[str],
                     allow_number: bool = True) -> tuple[list[str], bool]:
        """A noun phrase of a countable noun, and whether it is plural."""
        singular, plural = self.pick(pairs)
        adjective = self.maybe(0.35, [self.pick(adjectives)])
        roll = self.rng.random()
        if roll < 0.35:
            return ["the", *adjective, singular], False
        if roll < 0.55:
            head = adjective[0] if adjective else singular
            return [self.article(head), *adjective, singular], False
        if roll < 0.75:
            return [self.pick(POSSESSIVES + ("this", "that")), *adjective, singular], False
        if roll < 0.88 and allow_number:
            return [*number_words(int(self.rng.integers(2, 40))).split(), *adjective, plural], True
        return [self.pick(("the", "some", "these", "those", "many", "a few", "my", "our")), *adjective, plural], True

    def person_noun_phrase(self) -> tuple[list[str], bool]:
        roll = self.rng.random()
        if roll < 0.3:
            return [self.pick(NAMES)], False
        if roll < 0.4:
            return [self.pick(NAMES) + "'s", self.pick(RELATIONS)], False
        if roll < 0.5:
            return [self.pick(POSSESSIVES), self.pick(PEOPLE)[0] + "'s", self.pick(RELATIONS)], False
        return self.count_phrase(PEOPLE, PEOPLE_ADJECTIVES + GENERAL_ADJECTIVES)

    def animal_phrase(self) -> tuple[list[str], bool]:
        if self.chance(0.15):
            return [self.pick(NAMES) + "'s", self.pick(ANIMALS)[0]], False
        return self.count_phrase(ANIMALS, GENERAL_ADJECTIVES + ("hungry", "sleepy", "young", "wild", "brown",
                                                               "white", "black", "friendly", "angry"))

    def food_phrase(self) -> list[str]:
        roll = self.rng.random()
        if roll < 0.5:
            words, _ = self.count_phrase(FRUITS, FOOD_ADJECTIVES)
            return words
        adjective = self.maybe(0.35, [self.pick(FOOD_ADJECTIVES)])
        return [self.pick(("the", "some", "my", "our", "more", "your")), *adjective, self.pick(MASS_FOODS)]

    def drink_phrase(self) -> list[str]:
        drink = self.pick(DRINKS)
        if self.chance(0.5):
            n = int(self.rng.integers(1, 5))
            container = self.pick(CONTAINERS)[0 if n == 1 else 1]
            amount = self.article(container) if n == 1 else number_words(n)
            return [*amount.split(), container, "of", drink]
        return [self.pick(("the", "some", "more", "hot", "cold", "fresh")), drink]

    def place_phrase(self, city_allowed: bool = False) -> list[str]:
        if city_allowed and self.chance(0.15):
            return [self.pick(CITIES)]
        adjective = self.maybe(0.25, [self.pick(PLACE_ADJECTIVES)])
        return [self.pick(("the", "the", "the", "our", "my", "that")), *adjective,
                *self.pick(PLACES).split()]

    def location(self) -> list[str]:
        """Where: "in paris" or "behind the old station"."""
        if self.chance(0.15):
            return ["in", self.pick(CITIES)]
        return [*self.pick(LOCATIVES).split(), *self.place_phrase()]

    def destination(self) -> list[str]:
        """Where to: "to paris" or "across the bridge"."""
        if self.chance(0.15):
            return [self.pick(("to", "from")), self.pick(CITIES)]
        return [*self.pick(DIRECTIONS).split(), *self.place_phrase()]

    def object_phrase(self, kind: str) -> list[str]:
        if kind == "p":
            if self.chance(0.2):
                return [self.pick(OBJECT_PRONOUNS)]
            return self.person_noun_phrase()[0]
        if kind == "a":
            return self.animal_phrase()[0]
        if kind == "f":
            return self.food_phrase()
        if kind == "d":
            return self.drink_phrase()
        if kind == "l":
            return self.place_phrase(city_allowed=True)
        pairs = {"t": THINGS, "c": CLOTHES, "w": WRITINGS, "v": VEHICLES}[kind]
        adjectives = GENERAL_ADJECTIVES + (WRITING_ADJECTIVES if kind == "w" else THING_ADJECTIVES)
        return self.count_phrase(pairs, adjectives)[0]

    def subject(self, animal_allowed: bool) -> Subject:
        roll = self.rng.random()
        if roll < 0.35:
            return self.pick(PRONOUN_SUBJECTS)
        if animal_allowed and roll < 0.5:
            words, plural = self.animal_phrase()
        else:
            words, plural = self.person_noun_phrase()
        return Subject(tuple(words), 3, plural)

    # -- verbs ---------------------------------------------------------------------------
    def verb_complement(self, verb: tuple[str, ...]) -> list[str]:
        """What follows the verb: an object, a motion to a place, or an optional adverb."""
        kind = self.pick([k for k in verb[5] if k != "A"])
        if kind == "m":
            return self.destination()
        if kind == "i":
            return self.maybe(0.4, [self.pick(MANNER_ADVERBS)])
        return self.object_phrase(kind)

    @staticmethod
    def be(subject: Subject, past: bool) -> str:
        if past:
            return "were" if subject.plural or subject.person == 2 else "was"
        if subject.person == 1 and not subject.plural:
            return "am"
        return "is" if subject.third_singular else "are"

    def predicate(self, subject: Subject, verb: tuple[str, ...]) -> tuple[list[str], str]:
        """Verb group in a random tense (maybe negative), and the tense's name for the time phrase."""
        base, third, past, participle, ing, _ = verb
        present = third if subject.third_singular else base
        negative = self.chance(0.15)
        tense = self.pick(("past", "past", "present", "future", "progressive", "past_progressive",
                           "perfect", "going_to", "modal"))
        if tense == "past":
            words = ["didn't", base] if negative else [*self.maybe(0.12, [self.pick(FREQUENCY_ADVERBS)]), past]
        elif tense == "present":
            if negative:
                words = ["doesn't" if subject.third_singular else "don't", base]
            else:
                words = [*self.maybe(0.3, [self.pick(FREQUENCY_ADVERBS)]), present]
        elif tense == "future":
            words = ["won't" if negative else "will", base]
        elif tense in ("progressive", "past_progressive"):
            be = self.be(subject, tense == "past_progressive")
            words = [be + ("n't" if be != "am" else " not") if negative else be, ing]
        elif tense == "perfect":
            have = "has" if subject.third_singular else "have"
            words = [have + "n't", participle] if negative else [have, *self.maybe(0.2, ["just"]), participle]
        elif tense == "going_to":
            words = [self.be(subject, False), *(["not"] if negative else []), "going", "to", base]
        else:
            words = [self.pick(NEGATIVE_MODALS if negative else MODALS), base]
        return " ".join(words).split(), tense

    def time_phrase(self, tense: str) -> list[str]:
        """A time phrase that fits the tense."""
        roll = self.rng.random()
        if roll < 0.4:
            return self.pick(self.clock_times() if self.chance(0.5) else self.calendar_times()).split()
        choices = {"past": PAST_TIMES, "past_progressive": PAST_TIMES, "present": HABITUAL_TIMES,
                   "progressive": NOW_TIMES, "perfect": ("already", "this week", "this year", "today", "twice"),
                   }.get(tense, FUTURE_TIMES)
        return self.pick(choices).split()

    def clock_times(self) -> tuple[str, ...]:
        hour = number_words(int(self.rng.integers(1, 13)))
        minute = number_words(int(self.rng.integers(10, 60)))
        return (f"at {hour} o'clock", f"at half past {hour}", f"at a quarter to {hour}",
                f"at a quarter past {hour}", f"at {hour} {minute}", "at noon", "at midnight", f"at {hour}")

    def calendar_times(self) -> tuple[str, ...]:
        return (f"on {self.pick(DAYS)}", f"in {self.pick(MONTHS)}", self.pick(PARTS_OF_DAY),
                f"on {self.pick(DAYS)} {self.pick(PARTS_OF_DAY)}")

    def clause(self) -> list[str]:
        """Subject, verb group, complement, and maybe a place and a time."""
        verb = self.pick(VERBS)
        subject = self.subject("A" in verb[5])
        verb_words, tense = self.predicate(subject, verb)
        words = [*subject.words, *verb_words, *self.verb_complement(verb)]
        words += self.maybe(0.35, self.location())
        words += self.maybe(0.35, self.time_phrase(tense))
        if subject.words == ("i",) and verb_words[0] == "am" and self.chance(0.5):
            words[:2] = ["i'm"]
        return words

    # -- sentence kinds (clause above: a statement) --------------------------------------
    def compound(self) -> list[str]:
        return [*self.clause(), self.pick(CONNECTIVES), *self.clause()]

    def question(self) -> list[str]:
        verb = self.pick(TRANSITIVE_VERBS)
        kind = self.pick([k for k in verb[5] if k in "tcwvfdpal"])
        subject = self.subject("A" in verb[5])
        do = "does" if subject.third_singular else "do"
        have = "has" if subject.third_singular else "have"
        obj = self.object_phrase(kind)
        roll = self.rng.random()
        if roll < 0.2:
            return ["did", *subject.words, verb[0], *obj, *self.maybe(0.4, self.time_phrase("past"))]
        if roll < 0.3:
            return [do, *subject.words, *self.maybe(0.3, ["really"]), verb[0], *obj]
        if roll < 0.4:
            return ["will", *subject.words, verb[0], *obj, *self.maybe(0.4, self.time_phrase("future"))]
        if roll < 0.5:
            return [self.pick(("where", "when", "why", "how")), "did", *subject.words, verb[0], *obj]
        if roll < 0.6:
            return [have, *subject.words, "ever", verb[3], *obj]
        if roll < 0.7:
            return ["who", verb[2], *obj, *self.maybe(0.4, self.location())]
        if roll < 0.8:
            return [self.pick(MODALS[:3]), *subject.words, verb[0], *obj, *self.maybe(0.3, ["please"])]
        if roll < 0.9 and kind in "tcwva":
            pairs = {"t": THINGS, "c": CLOTHES, "w": WRITINGS, "v": VEHICLES, "a": ANIMALS}[kind]
            return [*self.pick((["how", "many"], ["which"])), self.pick(pairs)[1], "did", *subject.words, verb[0]]
        return [self.be(subject, False), *subject.words, verb[4], *obj,
                *self.maybe(0.4, self.time_phrase("progressive"))]

    def imperative(self) -> list[str]:
        verb = self.pick(VERBS)
        words = [*self.pick(([], ["please"], ["don't"], ["let's"], ["remember", "to"], ["try", "to"],
                             ["never"], ["always"])), verb[0], *self.verb_complement(verb)]
        words += self.maybe(0.3, self.location())
        return words + self.maybe(0.3, self.time_phrase("future"))

    def description(self) -> list[str]:
        roll = self.rng.random()
        past = self.chance(0.5)
        if roll < 0.2:
            words, plural = self.count_phrase(THINGS + CLOTHES + VEHICLES, THING_ADJECTIVES, allow_number=False)
            be = ("were" if plural else "was") if past else ("are" if plural else "is")
            return [*words, *self.maybe(0.4, self.location()), be,
                    *self.maybe(0.3, [self.pick(("very", "quite", "too", "really", "not"))]),
                    self.pick(THING_ADJECTIVES + GENERAL_ADJECTIVES)]
        if roll < 0.35:
            words, plural = self.person_noun_phrase()
            verbs = ("looked", "seemed", "felt", "was", "became") if past else (
                ("look", "seem", "feel", "are") if plural else ("looks", "seems", "feels", "is"))
            verb = self.pick(verbs)
            return [*words, verb, *self.maybe(0.3, [self.pick(("very", "quite", "a bit", "so"))]),
                    self.pick(PEOPLE_ADJECTIVES)]
        if roll < 0.5:
            n = int(self.rng.integers(2, 100))
            noun = self.pick(THINGS + ANIMALS + PEOPLE + VEHICLES)[1]
            return ["there", "were" if past else "are", *number_words(n).split(),
                    *self.maybe(0.3, [self.pick(GENERAL_ADJECTIVES)]), noun, *self.location()]
        if roll < 0.6:
            noun = self.pick(THINGS + ANIMALS + VEHICLES)[0]
            adjective = self.maybe(0.5, [self.pick(GENERAL_ADJECTIVES)])
            return ["there", "was" if past else "is", self.article((adjective or [noun])[0]), *adjective, noun,
                    *self.location()]
        if roll < 0.7:
            opener, times = self.pick(((["it's"], NOW_TIMES), (["it", "was"], PAST_TIMES),
                                       (["it", "will", "be"], FUTURE_TIMES)))
            return [*opener, *self.maybe(0.5, [self.pick(("very", "quite", "really", "so", "too"))]),
                    self.pick(WEATHER), *self.maybe(0.6, self.pick(times).split()),
                    *self.maybe(0.4, ["in", self.pick(CITIES)])]
        if roll < 0.8:
            who = self.pick(NAMES + ("my " + self.pick(PEOPLE)[0], "our " + self.pick(PEOPLE)[0]))
            return [*who.split(), "is" if not past else "was", *number_words(int(self.rng.integers(2, 100))).split(),
                    "years", "old", *self.maybe(0.4, [self.pick(("today", "now", "then", "last year"))])]
        if roll < 0.9:
            subject = self.pick(PRONOUN_SUBJECTS[2:4]) if self.chance(0.5) else Subject((self.pick(NAMES),), 3, False)
            price = number_words(int(self.rng.integers(2, 500))).split()
            verb, preposition = self.pick((("paid", "for"), ("spent", "on"), ("saved", "for"), ("earned", None),
                                           ("lost", None), ("found", None)))
            words = [*subject.words, verb, *price, self.pick(CURRENCIES)]
            if preposition:
                words += self.maybe(0.5, [preposition, *self.object_phrase(self.pick("tcwv"))])
            return words
        departure = self.pick(("leaves", "left", "arrives", "arrived", "will leave", "stops")).split()
        return ["the", *self.maybe(0.3, [self.pick(("first", "last", "next", "early", "late"))]),
                self.pick(VEHICLES)[0], *departure, *self.pick(self.clock_times()).split(),
                *self.maybe(0.4, ["on", self.pick(DAYS)])]

    def sentence(self) -> list[str]:
        kind = self.pick((self.clause, self.clause, self.clause, self.compound, self.compound,
                          self.question, self.question, self.imperative, self.description, self.description))
        return kind()


# Word counts the grammar draws often enough to be asked for (longer ones are rare compounds).
SHORTEST_SENTENCE, LONGEST_SENTENCE = 3, 20


def generate_sentence(rng: np.random.Generator, min_words: int = 4, max_words: int = 16,
                      max_tries: int = 5000) -> str:
    """One sentence of ``min_words`` to ``max_words`` words (longer or shorter draws are redrawn)."""
    grammar = SentenceGrammar(rng)
    for _ in range(max_tries):
        words = " ".join(grammar.sentence()).split()
        if min_words <= len(words) <= max_words:
            return " ".join(words)
    raise ValueError(f"the grammar drew no sentence of {min_words} to {max_words} words in {max_tries} tries: "
                     f"widen min_words/max_words")


def distinct_sentences(rng: np.random.Generator, n: int, exclude: set[str], min_words: int = 4,
                       max_words: int = 16) -> list[str]:
    """``n`` sentences, all different and none in ``exclude`` (so no two splits share one)."""
    sentences: list[str] = []
    seen = set(exclude)
    draws = 0
    while len(sentences) < n and draws < 20 * n + 1000:
        sentence = generate_sentence(rng, min_words, max_words)
        draws += 1
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    if len(sentences) == n:
        return sentences
    raise ValueError(f"drew only {len(sentences)} of {n} distinct sentences of {min_words} to {max_words} "
                     f"words: widen min_words/max_words or ask for fewer")
