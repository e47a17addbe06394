"""Write a synthetic Telegram Desktop "Export chat history" file of one channel.

    .venv/bin/python bench/gen_export.py [N] [-o FILE] [--seed S] [--whole-account]

N posts (default 1,000,000) in the exact shape Telegram Desktop writes (one-space indented
JSON, ``date`` and ``date_unixtime``, ``text`` as a string or a list of strings and entity
objects, ``text_entities``), streamed to disk one message at a time so memory stays flat.

The text is a Russian / Ukrainian / English mix (about 45 / 35 / 20 %) of a regional news
channel: sentences written for this file, numbers, times and place names varied, and one
invented surname per post in a random grammatical case, so the word-form analyser sees a long
tail of words it has not cached, as it does with real news (``--names 0`` leaves them out,
to see what they cost). Post lengths follow a log-normal
distribution (median about 300 characters, some over 2,000, a few media posts with no text).
About 12 % of posts are edited, 6 % forwarded, 22 % carry a photo, 4 % a video or a file,
0.3 % are service messages.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, TextIO

RU = [
    "В связи с угрозой обстрела объявлена эвакуация жителей прибрежных сел.",
    "Администрация района сообщает о продолжении эвакуации из зоны подтопления.",
    "Для проведения эвакуации выделены автобусы, сбор у здания школы в 10:00.",
    "Жителей просят не игнорировать сигналы воздушной тревоги и оставаться в укрытиях.",
    "По предварительным данным, пострадавших нет, повреждены линии электропередачи.",
    "Аварийные бригады уже работают на месте, подача электроэнергии будет восстановлена к вечеру.",
    "Информация о закрытии моста не соответствует действительности.",
    "Просим доверять только официальным источникам и не распространять слухи.",
    "На рынке возобновлена торговля, часть павильонов пока остается закрытой.",
    "Водоснабжение в центральной части города будет отключено с 9 до 17 часов.",
    "Пункт обогрева работает круглосуточно, там можно зарядить телефон и получить горячий чай.",
    "Глава администрации провел совещание с руководителями коммунальных служб.",
    "В больницу доставлены двое раненых, их состояние оценивается как средней тяжести.",
    "Занятия в школах переводятся в дистанционный формат до конца недели.",
    "Гуманитарную помощь можно получить в пункте выдачи на улице Садовой.",
    "Обращаем внимание на график работы общественного транспорта в выходные дни.",
    "Комендантский час продлен, передвижение без пропуска запрещено с 23:00 до 05:00.",
    "Сотрудники полиции проверяют информацию о возможных нарушениях.",
    "Спасатели эвакуировали пожилых людей, которые не могли самостоятельно покинуть дома.",
    "Сообщения о повторной эвакуации являются фейком, никаких решений не принималось.",
    "Жители многоэтажек получат компенсацию за поврежденные окна.",
    "Ремонт дороги на въезде в город завершат до начала зимы.",
    "Из-за повреждения газопровода без отопления остаются несколько улиц.",
    "Волонтеры собирают теплые вещи, лекарства и продукты для переселенцев.",
    "Подробности будут опубликованы после завершения проверки.",
]
UK = [
    "Через загрозу обстрілу оголошено евакуацію мешканців прибережних сіл.",
    "Нічні обстріли пошкодили дахи кількох будинків та лінію електропередачі.",
    "Обстріл тривав близько години, інформація про постраждалих уточнюється.",
    "Адміністрація громади нагадує про пункти евакуації та графік руху автобусів.",
    "Евакуація маломобільних людей відбувається за попередньою заявкою.",
    "Закликаємо мешканців не нехтувати сигналами повітряної тривоги.",
    "Інформація про закриття мосту не відповідає дійсності.",
    "Просимо довіряти лише офіційним джерелам і не поширювати чутки.",
    "Аварійні бригади вже працюють на місці, світло повернуть до вечора.",
    "Водопостачання у центральній частині міста буде відновлено після ремонту.",
    "Пункт незламності працює цілодобово, тут можна зарядити телефон і випити чаю.",
    "Голова громади провів нараду з керівниками комунальних служб.",
    "До лікарні доставили двох поранених, їхній стан оцінюють як середньої тяжкості.",
    "Навчання у школах переводять у дистанційний формат до кінця тижня.",
    "Гуманітарну допомогу можна отримати у пункті видачі на вулиці Садовій.",
    "Комендантську годину продовжено, пересування без перепустки заборонено.",
    "Рятувальники евакуювали людей похилого віку, які не могли самостійно залишити домівки.",
    "Повідомлення про повторну евакуацію є фейком, жодних рішень не ухвалювали.",
    "Мешканці багатоповерхівок отримають компенсацію за пошкоджені вікна.",
    "Через пошкодження газопроводу без опалення залишаються кілька вулиць.",
    "Волонтери збирають теплі речі, ліки та продукти для переселенців.",
    "На ринку відновили торгівлю, частина павільйонів поки що зачинена.",
    "Подробиці оприлюднимо після завершення перевірки.",
    "Дякуємо всім, хто долучився до прибирання території після обстрілу.",
]
EN = [
    "The regional administration has announced the evacuation of riverside villages.",
    "Buses for the evacuation leave from the school building at 10:00.",
    "Overnight shelling damaged several roofs and a power line.",
    "Repair crews are already on site and power should be restored by the evening.",
    "Reports that the bridge is closed are false.",
    "Please rely only on official sources and do not spread rumours.",
    "Two wounded people were taken to hospital and are in a stable condition.",
    "Schools will continue remote learning until the end of the week.",
    "Humanitarian aid can be collected at the distribution point on Garden Street.",
    "The curfew has been extended; movement without a pass is forbidden at night.",
    "Rescuers evacuated elderly residents who could not leave their homes on their own.",
    "Residents of apartment blocks will be compensated for broken windows.",
    "Volunteers are collecting warm clothes, medicine and food for displaced families.",
    "Details will be published once the inspection is complete.",
    "The heating point is open around the clock for anyone who needs it.",
    "Water supply in the city centre will be cut from 9 am to 5 pm.",
    "The market has reopened, although some stalls remain closed.",
    "Police are checking reports of possible violations.",
]
PLACES = [
    "Каменка",
    "Приморское",
    "Заречное",
    "Степное",
    "Луговое",
    "Вишнёвое",
    "Ореховка",
    "Кам'янка",
    "Приморське",
    "Зарічне",
    "Степове",
    "Лугове",
    "Вишневе",
    "Горіхівка",
    "Kamianka",
    "Prymorske",
    "Zarichne",
    "Stepove",
]
HASHTAGS = ["#новости", "#эвакуация", "#новини", "#евакуація", "#обстріл", "#news", "#важно"]
LINKS = ["https://example.gov.ua/news", "https://example.org/aid", "https://example.gov.ua/map"]
SYL = ["ко", "ва", "ль", "чу", "ше", "вче", "нко", "ре", "ми", "гу", "ла", "пе", "тро", "си", "да"]
ENDINGS = ["", "а", "у", "ом", "е", "ым", "ой", "ым", "ого"]
FORWARD_FROM = [
    ("Обласна військова адміністрація", 1900000001),
    ("Городской совет", 1900000002),
    ("Regional Emergency Service", 1900000003),
]

CHANNEL_ID = 1811111111
CHANNEL_NAME = "Бенчмарк: районная администрация"
START = 1_600_000_000


def iso(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))


def surname(rng: random.Random) -> str:
    parts = [rng.choice(SYL) for _ in range(rng.randint(2, 4))]
    return "".join(parts).capitalize() + rng.choice(ENDINGS)


def sentence(rng: random.Random, pool: list[str]) -> str:
    s = rng.choice(pool)
    r = rng.random()
    if r < 0.15:
        s = f"{rng.choice(PLACES)}: {s}"
    elif r < 0.3:
        day, month = rng.randint(1, 28), rng.randint(1, 12)
        s = f"{s} ({day}.{month:02d}, {rng.randint(0, 23)}:{rng.randint(0, 59):02d})"
    return s


def post_text(rng: random.Random, names: float = 1.0) -> str:
    r = rng.random()
    pool = RU if r < 0.45 else UK if r < 0.8 else EN
    target = min(4000, int(rng.lognormvariate(5.7, 0.8)))  # median ~300 chars
    out: list[str] = []
    length = 0
    while length < target:
        s = sentence(rng, pool)
        out.append(s)
        length += len(s) + 1
    if out and (names >= 1.0 or rng.random() < names):
        i = rng.randrange(len(out))
        out[i] = f"{out[i]} {surname(rng)}"
    return " ".join(out)


def text_field(rng: random.Random, text: str) -> tuple[Any, list[dict[str, Any]]]:
    """A plain string, or (every third post) the mixed list with bold/hashtag/text_link."""
    if rng.random() < 0.67 or not text:
        return text, ([{"type": "plain", "text": text}] if text else [])
    head, _, tail = text.partition(" ")
    tag = rng.choice(HASHTAGS)
    parts: list[Any] = [
        {"type": "bold", "text": head},
        " " + tail + "\n\n",
        {"type": "text_link", "text": "Подробнее", "href": rng.choice(LINKS)},
        " ",
        {"type": "hashtag", "text": tag},
    ]
    entities = [p if isinstance(p, dict) else {"type": "plain", "text": p} for p in parts]
    return parts, entities


def message(rng: random.Random, msg_id: int, when: int, names: float = 1.0) -> dict[str, Any]:
    if rng.random() < 0.003:
        return {
            "id": msg_id,
            "type": "service",
            "date": iso(when),
            "date_unixtime": str(when),
            "actor": CHANNEL_NAME,
            "actor_id": f"channel{CHANNEL_ID}",
            "action": "pin_message",
            "message_id": max(1, msg_id - 1),
            "text": "",
            "text_entities": [],
        }
    m: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "date": iso(when),
        "date_unixtime": str(when),
    }
    if rng.random() < 0.12:
        edited = when + rng.randint(60, 86_400)
        m["edited"] = iso(edited)
        m["edited_unixtime"] = str(edited)
    m["from"] = CHANNEL_NAME
    m["from_id"] = f"channel{CHANNEL_ID}"
    if rng.random() < 0.06:
        title, fid = rng.choice(FORWARD_FROM)
        m["forwarded_from"] = title
        m["forwarded_from_id"] = f"channel{fid}"
    r = rng.random()
    media_only = False
    if r < 0.22:
        m["photo"] = "(File not included. Change data exporting settings to download.)"
        m["photo_file_size"] = rng.randint(40_000, 400_000)
        m["width"] = 1280
        m["height"] = rng.choice([720, 960, 1280])
        media_only = rng.random() < 0.2
    elif r < 0.26:
        m["file"] = "(File not included. Change data exporting settings to download.)"
        m["file_size"] = rng.randint(500_000, 50_000_000)
        m["media_type"] = "video_file"
        m["mime_type"] = "video/mp4"
        m["duration_seconds"] = rng.randint(5, 600)
        m["width"] = 1280
        m["height"] = 720
    text = "" if media_only else post_text(rng, names)
    m["text"], m["text_entities"] = text_field(rng, text)
    if rng.random() < 0.3:
        m["reactions"] = [{"type": "emoji", "count": rng.randint(1, 300), "emoji": "👍"}]
    return m


def indent(obj: dict[str, Any], level: int) -> str:
    """One object as Telegram Desktop writes it: one-space indents, nested ``level`` deep."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    pad = " " * level
    return "\n".join(pad + line for line in text.split("\n"))


def write_export(
    out: TextIO, n: int, seed: int, *, whole_account: bool = False, names: float = 1.0
) -> None:
    rng = random.Random(seed)
    base = 2 if whole_account else 0
    pad = " " * base
    if whole_account:
        out.write('{\n "about": "Here is the data you requested.",\n "chats": {\n')
        out.write('  "about": "This page lists all chats from this export.",\n  "list": [\n')
        out.write('   {\n    "name": "Someone",\n    "type": "personal_chat",\n    "id": 42,\n')
        out.write('    "messages": []\n   },\n')
        pad = " " * 3
        out.write(pad + "{\n")
    else:
        out.write("{\n")
    inner = pad + " "
    out.write(f'{inner}"name": {json.dumps(CHANNEL_NAME, ensure_ascii=False)},\n')
    out.write(f'{inner}"type": "public_channel",\n{inner}"id": {CHANNEL_ID},\n')
    out.write(f'{inner}"messages": [\n')
    when = START
    for i in range(1, n + 1):
        when += rng.randint(30, 900)
        m = message(rng, i, when, names)
        out.write(indent(m, len(inner) + 1))
        out.write(",\n" if i < n else "\n")
    out.write(f"{inner}]\n{pad}}}\n")
    if whole_account:
        out.write("  ]\n }\n}\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000, help="number of posts")
    ap.add_argument("-o", "--output", type=Path, default=Path("bench/out/export.json"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--whole-account", action="store_true", help="wrap in chats.list")
    ap.add_argument(
        "--names",
        type=float,
        default=1.0,
        help="share of posts with an invented surname (words no dictionary knows)",
    )
    args = ap.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8", buffering=1 << 20) as out:
        write_export(out, args.n, args.seed, whole_account=args.whole_account, names=args.names)
    print(f"{args.output}: {args.n} posts, {args.output.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
