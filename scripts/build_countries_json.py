"""Regenerate interp/data/countries.json from the `countryinfo` package (PyPI, v1.0.1).

Source: countryinfo's per-country JSON files (capital, region/subregion, ISO-4217 currencies),
which derive from the public `mledoze/countries` and UN M49 data. We keep countries with an
ASCII name, a capital, a currency and a population of at least 150,000, drop dependent
territories and historical entries, strip accents from capitals, and map the UN regions to the
six continents the paper uses. Run: `python scripts/build_countries_json.py`.
"""

from __future__ import annotations

import glob
import json
import unicodedata
from pathlib import Path

import countryinfo

EXCLUDE = {"Serbia and Montenegro", "Guadeloupe", "Martinique", "Mayotte", "French Guiana", "Hong Kong",
           "Puerto Rico", "Palestine", "Taiwan"}


def continent(d: dict) -> str | None:
    region, sub, inter = d.get("region"), d.get("subregion", ""), d.get("intermediateregion", "")
    if region == "Americas":
        if sub == "Northern America" or inter in ("Central America", "Caribbean"):
            return "North America"
        return "South America" if inter == "South America" else None
    return region


def ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def main() -> None:
    rows = []
    data_dir = Path(countryinfo.__file__).parent / "data"
    for f in sorted(glob.glob(str(data_dir / "*.json"))):
        d = json.loads(Path(f).read_text())
        name, capital = d["name"], d.get("capital") or ""
        if isinstance(capital, list):
            capital = capital[0] if capital else ""
        capital = ascii_fold(capital)
        currencies = d.get("currencies") or []
        if name in EXCLUDE or not name.isascii() or any(c in name for c in ",()") or not capital or not currencies:
            continue
        if int(d.get("population") or 0) < 150_000 or continent(d) is None:
            continue
        rows.append({"name": name, "capital": capital, "continent": continent(d), "currency": currencies[0]})
    rows.sort(key=lambda r: r["name"])
    out = Path(__file__).resolve().parents[1] / "interp" / "data" / "countries.json"
    payload = {"source": "countryinfo 1.0.1 (PyPI); see scripts/build_countries_json.py", "countries": rows}
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {len(rows)} countries to {out}")


if __name__ == "__main__":
    main()
