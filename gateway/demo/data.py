"""Deterministic demo portfolio: realistic overdue consumer-loan accounts for the demo and tests.

Every value is made up and drawn from one ``random.Random(seed)``, so the same ``(count,
seed, as_of)`` always gives the same accounts. The data looks like a Chinese consumer lender's
overdue book:

* debtors: about 85 % Chinese names (weighted common surnames, 1-2 character given names) and
  about 15 % Latin-script names of foreign residents; about 10 % hold 2-3 accounts that share
  debtor id, name, national id, phones and address;
* national ids: 18 digits with the GB 11643 / ISO 7064 MOD 11-2 check digit and a birth date
  18-65 years before ``as_of``. Citizens' ids start with a real 6-digit area code (usually the
  district they live in); foreign residents' ids follow the 2023 permanent-residence card
  (leading ``9``, 2-digit province, 3-digit ISO 3166 nationality);
* 1-3 mainland mobile numbers (``+861[3-9]...``), a street address whose province matches
  ``region`` (``CN-31`` = Shanghai, GB/T 2260 numeric codes);
* products ``CASH_LOAN``, ``CARD_INSTALMENT``, ``BNPL``, ``CONSUMER_INSTALMENT`` in CNY with
  log-normal principals of CNY 500-200,000; balance = outstanding principal plus interest at
  10-24 % a year over the days past due plus a late fee of at most CNY 500;
* days past due across every bucket (M1 ... M6+, and 360+ for legal), skewed towards early
  buckets; credit grade A-E worsening with age; ``due_date = as_of - dpd``.

``write_csv`` and ``write_jsonl`` write the two intake file formats.
"""

import csv
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path

from schemas.account import BREAKDOWN_FIELDS, IntakeAccount

CSV_FIELDS: tuple[str, ...] = tuple(
    name for name, info in IntakeAccount.model_fields.items() if info.is_required()
)
"""Header row of intake CSV files, in model field order (the optional ``holds`` left out)."""
_PHONES_COLUMN = CSV_FIELDS.index("phones")
BREAKDOWN_COLUMNS: tuple[str, ...] = (
    *BREAKDOWN_FIELDS,
    "contract_no",
    "disbursed_on",
    "annual_rate_bp",
)
"""The optional columns ``write_csv(breakdown=True)`` adds."""


def rebalanced(account: IntakeAccount, balance_minor: int) -> IntakeAccount:
    """The account with a new balance; a given breakdown still adds up: a payment comes off
    penalty, interest and fees first and principal last, and a rise is principal."""
    parts = {name: getattr(account, name) for name in BREAKDOWN_FIELDS}
    if any(p is None for p in parts.values()):
        return account.model_copy(update={"balance_minor": balance_minor})
    paid = sum(parts.values()) - balance_minor
    for name in ("penalty_minor", "interest_minor", "fees_minor", "principal_due_minor"):
        take = max(0, min(parts[name], paid))
        parts[name] -= take
        paid -= take
    parts["principal_due_minor"] += max(0, -paid)
    return account.model_copy(update={"balance_minor": balance_minor, **parts})


_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"


def national_id_check_digit(body: str) -> str:
    """ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``) for the first 17 digits."""
    if len(body) != 17 or not body.isdigit():
        raise ValueError("a national id body is exactly 17 digits")
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


@dataclass(frozen=True, slots=True)
class City:
    """A city of residence: its province (GB/T 2260 code) and districts with their area codes."""

    province_code: str
    province: str
    name: str
    districts: tuple[tuple[str, str], ...]

    @property
    def region(self) -> str:
        return f"CN-{self.province_code}"


# province code, province, city, weight (relative share of borrowers), district+area code...
_GEOGRAPHY = """
44 广东省 广州市 6 天河区440106 越秀区440104 海珠区440105 白云区440111 番禺区440113
44 广东省 深圳市 6 福田区440304 罗湖区440303 南山区440305 宝安区440306 龙岗区440307
44 广东省 佛山市 2 禅城区440604 南海区440605 顺德区440606
31 上海市 上海市 8 黄浦区310101 徐汇区310104 长宁区310105 静安区310106 普陀区310107
31 上海市 上海市 0 虹口区310109 杨浦区310110 闵行区310112 宝山区310113 浦东新区310115
11 北京市 北京市 7 东城区110101 西城区110102 朝阳区110105 丰台区110106 海淀区110108
11 北京市 北京市 0 通州区110112 昌平区110114 大兴区110115
33 浙江省 杭州市 5 上城区330102 拱墅区330105 西湖区330106 滨江区330108 萧山区330109
33 浙江省 宁波市 3 海曙区330203 江北区330205 鄞州区330212
32 江苏省 南京市 5 玄武区320102 秦淮区320104 鼓楼区320106 江宁区320115
32 江苏省 苏州市 4 虎丘区320505 吴中区320506 相城区320507 姑苏区320508
51 四川省 成都市 7 锦江区510104 青羊区510105 金牛区510106 武侯区510107 成华区510108
37 山东省 济南市 3 历下区370102 市中区370103
37 山东省 青岛市 4 市南区370202 市北区370203 崂山区370212
41 河南省 郑州市 6 中原区410102 二七区410103 金水区410105
42 湖北省 武汉市 5 江岸区420102 江汉区420103 武昌区420106 洪山区420111
43 湖南省 长沙市 5 芙蓉区430102 天心区430103 岳麓区430104 开福区430105
35 福建省 福州市 2 鼓楼区350102 台江区350103
35 福建省 厦门市 2 思明区350203 湖里区350206
34 安徽省 合肥市 4 瑶海区340102 庐阳区340103 蜀山区340104 包河区340111
13 河北省 石家庄市 4 长安区130102 桥西区130104 新华区130105
50 重庆市 重庆市 4 渝中区500103 江北区500105 沙坪坝区500106 九龙坡区500107 渝北区500112
61 陕西省 西安市 3 新城区610102 碑林区610103 莲湖区610104 雁塔区610113
21 辽宁省 沈阳市 2 和平区210102 沈河区210103
21 辽宁省 大连市 1 中山区210202 沙河口区210204
12 天津市 天津市 2 和平区120101 河西区120103 南开区120104
36 江西省 南昌市 2 东湖区360102 西湖区360103
45 广西壮族自治区 南宁市 2 兴宁区450102 青秀区450103
53 云南省 昆明市 2 五华区530102 盘龙区530103
"""


def _cities(table: str) -> tuple[tuple[City, ...], tuple[int, ...]]:
    """Parse ``_GEOGRAPHY``; a weight-0 line continues the districts of the line above."""
    cities: list[City] = []
    weights: list[int] = []
    for line in table.strip().splitlines():
        code, province, name, weight, *districts = line.split()
        parsed = tuple((d[:-6], d[-6:]) for d in districts)
        if weight == "0":
            last = cities[-1]
            cities[-1] = City(code, province, name, last.districts + parsed)
        else:
            cities.append(City(code, province, name, parsed))
            weights.append(int(weight))
    return tuple(cities), tuple(weights)


CITIES, _CITY_WEIGHTS = _cities(_GEOGRAPHY)
_CITY_CUM = tuple(accumulate(_CITY_WEIGHTS))


_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
    "程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
)
_SURNAME_CUM = tuple(accumulate(1 / (rank + 4) for rank in range(len(_SURNAMES))))
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉萍红建文辉鑫宇浩然"
    "婷雪琳晨博子涵欣怡佳俊思梓轩雨泽诺嘉鹏飞斌凯宁颖倩晓慧秀兰海波林成志春"
)
_STREETS = (
    "人民路 解放路 中山路 建设路 和平路 新华路 长江路 黄河路 文化路 胜利路 朝阳路 东风路 "
    "青年路 光明路 幸福路 学府路 科技路 工业大道 滨江大道 世纪大道"
).split()
_MOBILE_PREFIXES = (
    "130 131 132 133 134 135 136 137 138 139 145 147 150 151 152 153 155 156 157 158 159 "
    "166 170 171 173 175 176 177 178 180 181 182 183 184 185 186 187 188 189 191 193 195 198 199"
).split()

# (ISO 3166 numeric, family name first?, given names, family names)
_FOREIGN: tuple[tuple[str, bool, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "410",
        True,
        ("Minjun", "Seoyeon", "Jiho", "Hayoon", "Dohyun"),
        ("Kim", "Lee", "Park", "Choi"),
    ),
    ("392", True, ("Yuki", "Haruto", "Sakura", "Ren", "Aoi"), ("Tanaka", "Suzuki", "Sato", "Ito")),
    ("840", False, ("James", "Emily", "Michael", "Sarah", "David"), ("Smith", "Miller", "Brown")),
    ("643", False, ("Olga", "Dmitry", "Anna", "Sergei"), ("Petrova", "Volkov", "Smirnova")),
    ("276", False, ("Lukas", "Anna", "Felix", "Laura"), ("Müller", "Schmidt", "Weber")),
    ("704", True, ("Van An", "Thi Mai", "Minh Duc"), ("Nguyen", "Tran", "Le", "Pham")),
)

# product -> (weight, min yuan, max yuan, median yuan, sigma of ln, rounding in yuan)
_PRODUCTS: dict[str, tuple[int, int, int, int, float, int]] = {
    "CASH_LOAN": (45, 1_000, 200_000, 12_000, 1.0, 100),
    "CARD_INSTALMENT": (20, 2_000, 100_000, 15_000, 0.8, 100),
    "BNPL": (25, 500, 20_000, 2_500, 0.8, 1),
    "CONSUMER_INSTALMENT": (10, 1_000, 50_000, 6_000, 0.7, 1),
}

# (first dpd, last dpd, share of accounts); the last range is the legal one (360+)
DPD_RANGES: tuple[tuple[int, int, float], ...] = (
    (1, 30, 0.35),
    (31, 60, 0.18),
    (61, 90, 0.12),
    (91, 180, 0.15),
    (181, 359, 0.12),
    (360, 2_000, 0.08),
)
_PRODUCT_NAMES = tuple(_PRODUCTS)
_PRODUCT_CUM = tuple(accumulate(p[0] for p in _PRODUCTS.values()))
_DPD_CUM = tuple(accumulate(r[2] for r in DPD_RANGES))
_GRADE_CUM = tuple(
    tuple(accumulate((max(2, 30 - 6 * s), 30 - 3 * s, 25, 10 + 3 * s, 5 + 6 * s)))
    for s in range(len(DPD_RANGES))
)
MULTI_ACCOUNT_SHARE = 0.10
FOREIGN_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class _Debtor:
    debtor_id: str
    name: str
    national_id: str
    phones: tuple[str, ...]
    address: str
    region: str


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year - years, day=28)


def _birth_date(rng: random.Random, as_of: date) -> date:
    oldest = _years_before(as_of, 66) + timedelta(days=1)
    youngest = _years_before(as_of, 18)
    age_days = int(rng.triangular(18, 66, 31) * 365.2425)
    return min(max(as_of - timedelta(days=age_days), oldest), youngest)


def _national_id(rng: random.Random, prefix: str, born: date) -> str:
    body = f"{prefix}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + national_id_check_digit(body)


def _debtor(rng: random.Random, debtor_id: str, as_of: date) -> _Debtor:
    city = rng.choices(CITIES, cum_weights=_CITY_CUM)[0]
    district, area_code = rng.choice(city.districts)
    born = _birth_date(rng, as_of)
    if rng.random() < FOREIGN_SHARE:
        country, family_first, givens, families = rng.choice(_FOREIGN)
        given, family = rng.choice(givens), rng.choice(families)
        name = f"{family} {given}" if family_first else f"{given} {family}"
        national_id = _national_id(rng, f"9{city.province_code}{country}", born)
    else:
        name = rng.choices(_SURNAMES, cum_weights=_SURNAME_CUM)[0]
        name += "".join(rng.choices(_GIVEN, k=1 if rng.random() < 0.3 else 2))
        if rng.random() < 0.25:  # born elsewhere: migrants are a large share of borrowers
            area_code = rng.choice(rng.choice(CITIES).districts)[1]
        national_id = _national_id(rng, area_code, born)
    phones: list[str] = []
    for _ in range(rng.choices((1, 2, 3), cum_weights=(70, 92, 100))[0]):
        phone = f"+86{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        if phone not in phones:
            phones.append(phone)
    place = city.province + (city.name if city.name != city.province else "") + district
    address = f"{place}{rng.choice(_STREETS)}{rng.randint(1, 999)}号"
    if rng.random() < 0.7:
        address += f"{rng.randint(1, 30)}栋{rng.randint(1, 28)}{rng.randint(1, 4):02d}室"
    return _Debtor(debtor_id, name, national_id, tuple(phones), address, city.region)


def _principal_yuan(rng: random.Random, product: str) -> int:
    _, low, high, median, sigma, step = _PRODUCTS[product]
    value = rng.lognormvariate(math.log(median), sigma)
    for _ in range(5):
        if low <= value <= high:
            break
        value = rng.lognormvariate(math.log(median), sigma)
    return max(low, min(high, round(value / step) * step))


def _account(
    rng: random.Random, debtor: _Debtor, account_id: str, as_of: date, breakdown: bool = False
) -> IntakeAccount:
    product = rng.choices(_PRODUCT_NAMES, cum_weights=_PRODUCT_CUM)[0]
    principal = _principal_yuan(rng, product) * 100
    stage = rng.choices(range(len(DPD_RANGES)), cum_weights=_DPD_CUM)[0]
    first, last, _ = DPD_RANGES[stage]
    if stage == len(DPD_RANGES) - 1:
        dpd = min(last, first + int(rng.expovariate(1 / 250)))
    else:
        dpd = rng.randint(first, last)
    outstanding = round(principal * rng.uniform(0.25 if product == "CASH_LOAN" else 0.5, 1.0))
    interest = round(outstanding * rng.uniform(0.10, 0.24) * dpd / 365)
    late_fee = rng.choice((0, 0, 2_000, 5_000, 10_000, 20_000, 50_000))
    grade = rng.choices("ABCDE", cum_weights=_GRADE_CUM[stage])[0]
    # The breakdown draws nothing from rng: the same seed gives the same accounts either way.
    details: dict[str, object] = {}
    if breakdown:
        term_days = 365 * (1 + int(account_id[-1]) % 3)
        details = {
            "principal_due_minor": outstanding,
            "interest_minor": interest,
            "penalty_minor": late_fee,
            "fees_minor": 0,
            "contract_no": f"LC-{account_id}",
            "disbursed_on": as_of - timedelta(days=dpd + term_days // 2),
            "annual_rate_bp": 1800 + 100 * (int(account_id[-2]) % 7),
        }
    return IntakeAccount(
        account_id=account_id,
        debtor_id=debtor.debtor_id,
        name=debtor.name,
        national_id=debtor.national_id,
        phones=debtor.phones,
        address=debtor.address,
        region=debtor.region,
        product=product,
        currency="CNY",
        principal_minor=principal,
        balance_minor=outstanding + interest + late_fee,
        dpd=dpd,
        credit_grade=grade,
        due_date=as_of - timedelta(days=dpd),
        **details,
    )


def generate_accounts(
    count: int, *, seed: int, as_of: date, breakdown: bool = False
) -> Iterator[IntakeAccount]:
    """Yield ``count`` valid accounts, the same ones for the same ``(count, seed, as_of)``.

    With ``breakdown`` each also carries the optional balance breakdown (outstanding
    principal, interest, late fee as penalty, no fees), a contract number, a disbursement
    date and a rate; the other fields are the same as without.

    Accounts of one debtor are yielded together; ids are ``AC`` / ``CU`` plus 10 digits,
    unique within one call.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(seed)
    account_base = rng.randrange(1_000_000_000, 8_000_000_000)
    debtor_base = rng.randrange(1_000_000_000, 8_000_000_000)
    produced = debtors = 0
    while produced < count:
        debtor = _debtor(rng, f"CU{debtor_base + debtors:010d}", as_of)
        debtors += 1
        accounts = rng.choice((2, 3)) if rng.random() < MULTI_ACCOUNT_SHARE else 1
        for _ in range(min(accounts, count - produced)):
            yield _account(rng, debtor, f"AC{account_base + produced:010d}", as_of, breakdown)
            produced += 1


def write_csv(
    accounts: Iterable[IntakeAccount], path: Path, *, holds: bool = False, breakdown: bool = False
) -> int:
    """Write an intake CSV (UTF-8, header row, phones joined by ``;``; with ``breakdown`` the
    optional breakdown and contract columns (empty when not given); with ``holds`` the
    optional ``holds`` column too, codes joined by ``;``); return the row count."""
    rows = 0
    fields = (*CSV_FIELDS, *BREAKDOWN_COLUMNS) if breakdown else CSV_FIELDS
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*fields, "holds") if holds else fields)
        for account in accounts:
            row: list[object] = [getattr(account, field) for field in fields]
            row[_PHONES_COLUMN] = ";".join(account.phones)
            if holds:
                row.append(";".join(account.holds))
            writer.writerow(row)
            rows += 1
    return rows


def write_jsonl(accounts: Iterable[IntakeAccount], path: Path) -> int:
    """Write intake JSON Lines (one ``model_dump(mode="json")`` object a line); return the count."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for account in accounts:
            handle.write(account.model_dump_json() + "\n")
            rows += 1
    return rows


__all__ = [
    "BREAKDOWN_COLUMNS",
    "CITIES",
    "CSV_FIELDS",
    "DPD_RANGES",
    "FOREIGN_SHARE",
    "MULTI_ACCOUNT_SHARE",
    "City",
    "generate_accounts",
    "national_id_check_digit",
    "rebalanced",
    "write_csv",
    "write_jsonl",
]
