"""Synthetic song lyrics for the embedded sample corpus.

``write_lyrics(spec)`` writes deterministic (``spec.seed``) lyrics about
``spec.lyrics_themes``: verses, a chorus that repeats, sometimes a short bridge,
12-30 lines in all. English for ``"en"``, Spanish (with its accents) for ``"es"``,
Korean (Hangul) with English hooks for ``"ko"``; instrumentals get ``""``.

The vocabularies here are test-data generators: nothing else in the project reads
them (the offline lyrics-understanding backend has its own, independent lexicon, so
it is not graded against the words that wrote the lyrics).
"""

from __future__ import annotations

import random
import re

from builders.sample.specs import ClipSpec

# --------------------------------------------------------------------------- vocabularies
# Per language, per theme: "images" (noun phrases), "acts" (first-person verb phrases),
# "feels" (adjectives/moods), "hooks" (whole chorus lines).

LEXICON: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "love": {
            "images": ["your open arms", "a paper rose", "the light in your eyes", "a promise on my lips",
                       "your name on the window"],
            "acts": ["hold you close", "call your name", "fall for you again", "give you all my heart",
                     "kiss the morning slow"],
            "feels": ["tender", "golden", "burning", "sweet"],
            "hooks": ["You're the one I'm falling for", "Stay with me, my darling", "My heart beats only for you"],
        },
        "night": {
            "images": ["the neon moon", "a midnight train", "the city after dark", "a sky full of stars",
                       "the streetlights humming"],
            "acts": ["drive until the dawn", "stay awake till sunrise", "chase the evening shadows",
                     "dance beneath the stars"],
            "feels": ["electric", "restless", "silver", "wide awake"],
            "hooks": ["Tonight we own the night", "Under the moon we come alive", "Don't let the night go"],
        },
        "heartbreak": {
            "images": ["a broken mirror", "the empty other side of the bed", "your fading footsteps",
                       "the rain on the glass", "a letter I never sent"],
            "acts": ["pick up the pieces", "cry an ocean", "let you walk away", "forget your face"],
            "feels": ["shattered", "hollow", "cold", "bleeding"],
            "hooks": ["You left me with the silence", "Every tear still knows your name",
                      "I'm falling apart without you"],
        },
        "memory": {
            "images": ["an old photograph", "the summer we were young", "a faded polaroid", "the echo of your laughter",
                       "a dusty attic box"],
            "acts": ["remember every word", "look back on yesterday", "trace the pictures on the wall",
                     "hold on to the past"],
            "feels": ["faded", "nostalgic", "yellowed", "bittersweet"],
            "hooks": ["I still remember you", "Yesterday won't let me go", "Those days are burned in my mind"],
        },
        "rebellion": {
            "images": ["the barricades", "a fist in the air", "the broken chains", "a wall of noise",
                       "the riot in the street"],
            "acts": ["tear it all down", "refuse to kneel", "break every rule", "shout against the wind"],
            "feels": ["defiant", "loud", "unbroken", "furious"],
            "hooks": ["We won't back down", "Raise your voice and burn the stage", "Nobody tells us how to live"],
        },
        "freedom": {
            "images": ["the open highway", "a bird without a cage", "the endless sky", "the wind in my hair",
                       "the wild horizon"],
            "acts": ["spread my wings", "run without a map", "leave the cage behind", "break away"],
            "feels": ["free", "wild", "weightless", "untamed"],
            "hooks": ["Now I'm finally free", "Nothing's gonna hold me down", "Let me fly away"],
        },
        "nature": {
            "images": ["the river bend", "the willow tree", "the morning dew", "the mountain air", "a field of clover"],
            "acts": ["walk among the pines", "listen to the river", "lie down in the meadow",
                     "follow the winding stream"],
            "feels": ["green", "gentle", "quiet", "wild"],
            "hooks": ["The river carries me home", "Sing with the willow and the wind", "Where the wildflowers grow"],
        },
        "home": {
            "images": ["the porch light", "my mother's kitchen", "the old front door", "a candle in the window",
                       "the fireplace"],
            "acts": ["find my way back", "come home again", "knock on the old front door", "rest my weary head"],
            "feels": ["warm", "safe", "familiar", "homesick"],
            "hooks": ["Take me home tonight", "There's a light that leads me home", "Home is where you are"],
        },
        "dance": {
            "images": ["the dance floor", "the spinning lights", "the bassline", "a mirror ball",
                       "the rhythm in my feet"],
            "acts": ["move my body", "dance until the morning", "lose myself in the beat", "spin around"],
            "feels": ["electric", "sweaty", "dizzy", "alive"],
            "hooks": ["Move your body to the beat", "Dance with me all night long", "Don't stop the rhythm"],
        },
        "dreams": {
            "images": ["a sky of broken glass", "the clouds of sleep", "a kaleidoscope", "a castle made of sand",
                       "the edge of sleep"],
            "acts": ["close my eyes", "drift away", "wake inside a dream", "float above the clouds"],
            "feels": ["hazy", "surreal", "floating", "dreaming"],
            "hooks": ["Wake me up inside this dream", "We are made of dreams", "Lost in a dream again"],
        },
        "time": {
            "images": ["the ticking clock", "the hourglass", "the turning seasons", "a second hand",
                       "the calendar pages"],
            "acts": ["turn back the clock", "run out of time", "count the hours", "wait for tomorrow"],
            "feels": ["fleeting", "endless", "borrowed", "racing"],
            "hooks": ["Time keeps slipping away", "Give me one more hour", "The clock won't stop for us"],
        },
        "city": {
            "images": ["the concrete jungle", "a subway car", "the corner store", "the streetlight",
                       "the crowded avenue"],
            "acts": ["walk these city blocks", "write my name on the wall", "ride the late bus", "hustle every day"],
            "feels": ["gritty", "crowded", "loud", "restless"],
            "hooks": ["These streets know my name", "Streetlight letters on the wall", "City never sleeps for me"],
        },
        "struggle": {
            "images": ["an empty wallet", "the uphill road", "the weight on my shoulders", "the rent that's due",
                       "the long grind"],
            "acts": ["fight to survive", "keep my head up", "work the double shift", "carry the load"],
            "feels": ["tired", "hungry", "stubborn", "worn"],
            "hooks": ["I keep on fighting through", "Never giving up the grind", "Rise above it all"],
        },
        "childhood": {
            "images": ["a tin toy soldier", "the playground swing", "a paper kite", "the ice cream truck",
                       "a box of crayons"],
            "acts": ["skip along the street", "play until the sunset", "laugh without a reason",
                     "build a blanket fort"],
            "feels": ["playful", "innocent", "silly", "bright"],
            "hooks": ["Let's be kids again", "Round and round the carousel", "Marching in the toy parade"],
        },
        "joy": {
            "images": ["the sunshine", "a brass band", "a bunch of balloons", "the laughter in the square",
                       "a summer parade"],
            "acts": ["sing out loud", "clap my hands", "smile all day", "jump for joy"],
            "feels": ["happy", "sunny", "cheerful", "bright"],
            "hooks": ["Everybody sing along", "Happy days are here again", "Clap your hands and shout"],
        },
        "anger": {
            "images": ["the burning sky", "a clenched fist", "the gathering storm", "the shattered glass",
                       "a wall of fire"],
            "acts": ["scream into the void", "burn it to the ground", "break the silence", "spit the fire"],
            "feels": ["furious", "violent", "black", "raging"],
            "hooks": ["Feel the fire in my veins", "Rage against the static", "Burn it all away"],
        },
        "war": {
            "images": ["the battlefield", "the iron cathedral", "a rusted sword", "the smoke of cannons",
                       "the fallen soldiers"],
            "acts": ["march into the fire", "raise the iron shield", "fight until the end", "stand against the horde"],
            "feels": ["bloody", "iron", "merciless", "grim"],
            "hooks": ["We march to war tonight", "Iron and blood forever", "No surrender, no retreat"],
        },
        "summer": {
            "images": ["the sunlit beach", "a cold lemonade", "the August heat", "the sandy towels", "the fireflies"],
            "acts": ["swim in the bay", "lie in the sun", "drive down the coast", "stay out late"],
            "feels": ["sunny", "golden", "lazy", "warm"],
            "hooks": ["Summer, don't you fade away", "Golden days of summer", "Stay with me till the summer ends"],
        },
        "loneliness": {
            "images": ["an empty room", "a single chair", "the silent phone", "the cold side of the bed",
                       "a table set for one"],
            "acts": ["talk to the walls", "wait by the phone", "walk alone at night", "count the empty hours"],
            "feels": ["lonely", "alone", "grey", "quiet"],
            "hooks": ["Nobody's here but me", "Alone again tonight", "Just me and my shadow"],
        },
        "distance": {
            "images": ["a thousand miles", "the other side of the ocean", "a long-distance call", "the airport gate",
                       "your postcard"],
            "acts": ["miss you every night", "count the miles", "wait for your call", "cross the ocean"],
            "feels": ["far", "distant", "longing", "apart"],
            "hooks": ["So far away from you", "Miles between our hearts", "I'll cross the world for you"],
        },
        "road": {
            "images": ["the dusty backroad", "a pickup truck", "the gravel highway", "the county line",
                       "the rear-view mirror"],
            "acts": ["roll the windows down", "drive all night", "follow the white line", "hit the road"],
            "feels": ["dusty", "rambling", "easy", "free"],
            "hooks": ["Down the backroad we go", "Roll on, roll on", "Nothing but the open road"],
        },
        "friendship": {
            "images": ["my brothers in the band", "an old guitar", "a campfire circle", "a shared bottle",
                       "my oldest friend"],
            "acts": ["stand by you", "sing along together", "raise a glass", "have your back"],
            "feels": ["loyal", "true", "together", "close"],
            "hooks": ["Friends until the end", "I'll always have your back", "Together we will stand"],
        },
        "adventure": {
            "images": ["the pixel mountains", "a treasure map", "the final level", "a rocket ship",
                       "the unknown island"],
            "acts": ["jump into the sky", "explore the map", "race against the clock", "level up again"],
            "feels": ["daring", "fearless", "fast", "bold"],
            "hooks": ["Press start and run", "Adventure's calling me", "Jump into the unknown"],
        },
        "sea": {
            "images": ["the lighthouse", "the crashing waves", "the salty wind", "the harbor lights",
                       "the deep blue sea"],
            "acts": ["sail across the bay", "swim against the tide", "watch the ships go by", "walk along the shore"],
            "feels": ["salty", "blue", "endless", "deep"],
            "hooks": ["The ocean calls my name", "Ride the waves with me", "Follow the lighthouse home"],
        },
    },
    "es": {
        "love": {
            "images": ["tus ojos", "tu corazón", "un beso de verano", "la rosa roja", "tu voz"],
            "acts": ["te busco", "te llamo otra vez", "te quiero más", "te doy mi corazón", "te espero aquí"],
            "feels": ["enamorados", "eternos", "ardientes", "dulces"],
            "hooks": ["Eres mi amor, mi canción", "Corazón, no me dejes caer", "Te quiero más que ayer"],
        },
        "sea": {
            "images": ["el faro", "el mar", "la marea", "las olas", "la orilla", "el puerto"],
            "acts": ["navego sin rumbo", "camino por la orilla", "miro el horizonte", "nado contra la marea"],
            "feels": ["salados", "azules", "infinitos", "profundos"],
            "hooks": ["Eres mi faro en la oscuridad", "El mar me llama por mi nombre", "Las olas cantan tu canción"],
        },
        "night": {
            "images": ["la luna", "las estrellas", "la noche", "la ciudad dormida"],
            "acts": ["no duermo", "camino bajo la luna", "sueño despierto", "bailo hasta el amanecer"],
            "feels": ["nocturnos", "despiertos", "plateados"],
            "hooks": ["Esta noche es para ti", "Bajo la luna volveré", "La noche no termina aquí"],
        },
        "dance": {
            "images": ["la pista", "el ritmo", "la música", "tus caderas"],
            "acts": ["bailo sin parar", "muevo mi cuerpo", "me pierdo en el ritmo", "giro y giro"],
            "feels": ["libres", "eléctricos", "locos"],
            "hooks": ["Baila conmigo esta canción", "Que no pare la música", "Muévete al compás"],
        },
        "heartbreak": {
            "images": ["las lágrimas", "el adiós", "la lluvia", "el silencio"],
            "acts": ["lloro por ti", "te pierdo otra vez", "recojo los pedazos", "olvido tu nombre"],
            "feels": ["rotos", "perdidos", "fríos"],
            "hooks": ["Me rompiste el corazón", "Sin ti no sé vivir", "Adiós, mi amor, adiós"],
        },
        "memory": {
            "images": ["los recuerdos", "la foto vieja", "aquel verano", "tu risa"],
            "acts": ["recuerdo tu voz", "miro hacia atrás", "guardo tu carta"],
            "feels": ["lejanos", "dorados", "nostálgicos"],
            "hooks": ["Todavía recuerdo aquel verano", "Tu recuerdo vive en mí"],
        },
        "freedom": {
            "images": ["el cielo abierto", "el viento", "las alas", "el camino"],
            "acts": ["vuelo lejos", "rompo las cadenas", "corro sin miedo"],
            "feels": ["libres", "salvajes"],
            "hooks": ["Por fin soy libre", "Nadie me puede detener"],
        },
        "dreams": {
            "images": ["los sueños", "las nubes", "un castillo de arena"],
            "acts": ["cierro los ojos", "sueño contigo", "floto en el cielo"],
            "feels": ["soñadores", "perdidos"],
            "hooks": ["Vivo en un sueño", "No me despiertes todavía"],
        },
        "joy": {
            "images": ["el sol", "la fiesta", "la alegría", "la plaza"],
            "acts": ["canto contigo", "río sin razón", "salto de alegría"],
            "feels": ["felices", "radiantes"],
            "hooks": ["Canta conmigo, corazón", "Qué alegría vivir así"],
        },
    },
    "ko": {
        "love": {
            "images": ["너의 미소", "너의 눈빛", "우리의 약속", "붉은 장미", "너의 목소리"],
            "acts": ["너를 사랑해", "너의 이름을 불러", "너만 생각해", "네 손을 잡아"],
            "feels": ["설레는", "달콤한", "뜨거운", "눈부신"],
            "hooks": ["Oh baby, 사랑해 tonight", "You're my everything, 너뿐이야", "내 맘이 너를 불러 love"],
        },
        "dance": {
            "images": ["무대", "반짝이는 조명", "비트", "너의 발걸음"],
            "acts": ["춤을 춰", "몸을 흔들어", "리듬에 맡겨", "멈추지 않아"],
            "feels": ["신나는", "뜨거운", "자유로운"],
            "hooks": ["Dance with me, 멈추지 마", "Step by step, 우리 함께", "Feel the beat, 더 높이"],
        },
        "night": {
            "images": ["밤하늘", "별빛", "달빛", "도시의 불빛"],
            "acts": ["잠들지 못해", "밤새 걸어", "별을 세어"],
            "feels": ["반짝이는", "깊은", "고요한"],
            "hooks": ["Tonight, 별빛 아래서", "이 밤이 끝나지 않게"],
        },
        "sea": {
            "images": ["바다", "파도", "등대", "바닷바람"],
            "acts": ["파도를 따라가", "바다를 바라봐"],
            "feels": ["푸른", "깊은"],
            "hooks": ["파도처럼 너에게 가", "Ocean blue, 너를 향해"],
        },
        "heartbreak": {
            "images": ["눈물", "이별", "빗소리", "빈 방"],
            "acts": ["너를 잊어", "혼자 울어", "뒤돌아서"],
            "feels": ["아픈", "차가운", "부서진"],
            "hooks": ["Goodbye, 이젠 안녕", "내 맘이 부서져"],
        },
        "dreams": {
            "images": ["꿈", "구름", "무지개"],
            "acts": ["눈을 감아", "꿈을 꿔", "하늘을 날아"],
            "feels": ["몽환적인", "아득한"],
            "hooks": ["Dreaming, 깨지 않을래", "꿈속에서 만나"],
        },
        "joy": {
            "images": ["햇살", "웃음소리", "축제"],
            "acts": ["노래해", "크게 웃어", "손뼉을 쳐"],
            "feels": ["행복한", "밝은"],
            "hooks": ["Happy day, 함께 노래해", "오늘은 웃어 봐"],
        },
    },
}

# Used when a theme has no entry in the language.
GENERIC: dict[str, dict[str, list[str]]] = {
    "en": {
        "images": ["the morning light", "an open door", "the falling rain", "a quiet song", "the road ahead"],
        "acts": ["keep on going", "find my way", "sing it loud", "wait for a sign"],
        "feels": ["brave", "bright", "restless", "new"],
        "hooks": ["We keep on singing", "This is our song", "Here we go again"],
    },
    "es": {
        "images": ["el camino", "la lluvia", "la canción", "la mañana"],
        "acts": ["sigo adelante", "canto fuerte", "busco mi lugar"],
        "feels": ["valientes", "nuevos"],
        "hooks": ["Esta es nuestra canción", "Sigo mi camino así"],
    },
    "ko": {
        "images": ["하늘", "길", "노래", "아침 햇살"],
        "acts": ["앞으로 나아가", "노래를 불러", "너를 기다려"],
        "feels": ["새로운", "빛나는"],
        "hooks": ["Here we go, 다시 한번", "우리의 노래 forever"],
    },
}

# Line templates per language: {image}, {image2}, {act}, {feel}; "{Image}" = capitalised.
TEMPLATES: dict[str, list[str]] = {
    "en": [
        "I {act} under {image}",
        "{Image} is calling out tonight",
        "We were {feel} like {image}",
        "Every time I {act}, I see {image}",
        "Take me back to {image}",
        "Nothing left but {image} and me",
        "I keep on running to {image}",
        "{Feel} hearts and {image2}",
        "Tell me why I {act} alone",
        "Between {image} and {image2}",
        "Oh, I {act} when the lights go low",
        "Still I {act}, still I wait",
    ],
    "es": [
        "{Act} bajo {image}",
        "{Image} me llama esta noche",
        "Éramos {feel} como {image}",
        "Cada vez que {act}, veo {image}",
        "Llévame de vuelta a {image}",
        "Solo quedamos tú, yo y {image}",
        "¿Por qué {act} sin ti?",
        "Entre {image} y {image2}",
        "Ay, {act} y el corazón se va",
        "Todavía {act}, todavía estás aquí",
        "Qué bonito es mirar {image}",
    ],
    "ko": [
        "{image} 아래서 {act}",
        "{image}{i/ga} 나를 불러",
        "{feel} 우리 둘, like a dream",
        "매일 밤 {act}",
        "{image}{eul/reul} 기억해",
        "Tonight, {image} 속으로",
        "나는 오늘도 {act}",
        "너와 나, {image}처럼",
        "{feel} {image2}, oh",
        "Baby, {act}",
    ],
}

BRIDGES: dict[str, list[str]] = {
    "en": ["And if the world stops turning", "I'll still be here", "So let it all fall down",
           "We'll rise again somehow"],
    "es": ["Y si el mundo se detiene", "Aquí estaré también", "Que todo se caiga ya", "Volveremos a empezar"],
    "ko": ["세상이 멈춰도", "난 여기 있을게", "Let it go, 다 괜찮아", "우린 다시 시작해"],
}

_ACCENT_WORDS = ("corazón", "canción", "también", "aquí", "estás", "mañana", "sí")


# --------------------------------------------------------------------------- helpers


def _has_batchim(word: str) -> bool:
    """Whether the last Hangul syllable ends in a consonant (chooses 이/가, 을/를)."""
    for ch in reversed(word.strip()):
        code = ord(ch)
        if 0xAC00 <= code <= 0xD7A3:
            return (code - 0xAC00) % 28 != 0
        if ch.isalnum():
            return False
    return False


def _cap(text: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1 :]
    return text


def _fill(template: str, lang: str, vocab: dict[str, list[str]], rng: random.Random) -> str:
    image, image2 = rng.sample(vocab["images"], 2) if len(vocab["images"]) > 1 else (vocab["images"][0],) * 2
    act, feel = rng.choice(vocab["acts"]), rng.choice(vocab["feels"])
    line = template
    line = line.replace("{i/ga}", "이" if _has_batchim(image) else "가")
    line = line.replace("{eul/reul}", "을" if _has_batchim(image) else "를")
    line = line.format(image=image, image2=image2, act=act, feel=feel,
                       Image=_cap(image), Act=_cap(act), Feel=_cap(feel))
    if lang == "es":
        line = re.sub(r"\ba el\b", "al", line)
        line = re.sub(r"\bde el\b", "del", line)
    return _cap(line) if lang != "ko" else line


def _vocab(lang: str, themes: tuple[str, ...]) -> dict[str, list[str]]:
    table = LEXICON[lang]
    merged: dict[str, list[str]] = {"images": [], "acts": [], "feels": [], "hooks": []}
    for theme in themes:
        entry = table.get(theme)
        if entry is None:
            entry = GENERIC[lang]
            if lang == "en":  # an unknown theme still gets named in English lyrics
                entry = {**entry, "images": entry["images"] + [f"the {theme}"],
                         "hooks": entry["hooks"] + [f"We sing of {theme} tonight"]}
        for k in merged:
            merged[k].extend(x for x in entry[k] if x not in merged[k])
    if not themes:
        merged = {k: list(v) for k, v in GENERIC[lang].items()}
    return merged


def _unique_lines(n: int, lang: str, vocab, rng: random.Random, used: set[str]) -> list[str]:
    templates = TEMPLATES[lang]
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 200:
        tries += 1
        line = _fill(rng.choice(templates), lang, vocab, rng)
        if line not in used:
            used.add(line)
            out.append(line)
    while len(out) < n:  # tiny vocabularies: accept repeats rather than loop forever
        out.append(_fill(rng.choice(templates), lang, vocab, rng))
    return out


# --------------------------------------------------------------------------- public


def write_lyrics(spec: ClipSpec) -> str:
    """Deterministic lyrics for ``spec``: verses + a repeated chorus (12-30 lines)."""
    if spec.instrumental:
        return ""
    lang = spec.lang if spec.lang in LEXICON else "en"
    rng = random.Random(f"lyrics:{spec.seed}:{spec.id}")
    themes = tuple(spec.lyrics_themes)
    vocab = _vocab(lang, themes)

    # Chorus: a hook from the first theme, an image line, a hook from the second theme
    # (or a second hook), and the first hook again -- the repetition a listener remembers.
    primary = (LEXICON[lang].get(themes[0]) if themes else None) or GENERIC[lang]
    hook = rng.choice(primary["hooks"])
    others = [h for h in vocab["hooks"] if h != hook] or [hook]
    used: set[str] = {hook}
    chorus = [hook, *_unique_lines(1, lang, vocab, rng, used), rng.choice(others), hook]
    if lang == "es" and not any(w in " ".join(chorus).lower() for w in _ACCENT_WORDS):
        chorus[1] = chorus[1] + ", corazón"

    verse1 = _unique_lines(rng.randint(3, 5), lang, vocab, rng, used)
    verse2 = _unique_lines(rng.randint(3, 5), lang, vocab, rng, used)
    stanzas = [verse1, chorus, verse2, chorus]
    if rng.random() < 0.6:
        start = rng.randrange(0, len(BRIDGES[lang]) - 1)
        stanzas.append(BRIDGES[lang][start : start + 2])
        stanzas.append(chorus)
    elif rng.random() < 0.5:
        stanzas.append(chorus)
    return "\n\n".join("\n".join(s) for s in stanzas) + "\n"
