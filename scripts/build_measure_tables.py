"""Write the carbon-intensity and CPU-power tables greenlm ships (src/greenlm/measure/data/) from an installed
CodeCarbon's package data.

    python scripts/build_measure_tables.py            # needs `pip install codecarbon` (any 3.3+ release)

greenlm reads only the files this writes, never CodeCarbon's own, so `pip install greenlm` without extras prices
a run in every region, and a result does not change with the CodeCarbon installed. Each table keeps the figures
as CodeCarbon publishes them (US states converted from lbs/MWh, Canadian provinces computed from their generation
mix with CodeCarbon's own function, both said in the row), with the original publisher, the CodeCarbon release and
file they were read from. Run it again after a CodeCarbon release to update the figures; the diff is the review.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "greenlm" / "measure" / "data"
KG_PER_LB = 0.45359237  # lbs/MWh x this = g/kWh (the same constant as greenlm.measure.units)


def codecarbon_root() -> tuple[Path, str]:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("CodeCarbon is not installed: pip install codecarbon")
    return Path(list(spec.submodule_search_locations)[0]), importlib.metadata.version("codecarbon")


def read_json(root: Path, relative: str):
    with open(root / relative, encoding="utf-8-sig") as f:
        return json.load(f)


def table(name, kind, origin, via, regions, **extra) -> dict:
    return {"table": name, "kind": kind, "unit": "gCO2e/kWh", "origin": origin, "via": via, **extra,
            "regions": regions}


def countries(root, via):
    rel = "data/private_infra/global_energy_mix.json"
    rows = []
    for iso, row in sorted(read_json(root, rel).items()):
        if row.get("carbon_intensity") is None:
            continue
        rows.append({"name": iso, "label": row.get("country_name") or iso, "g_per_kwh": row["carbon_intensity"],
                     "year": row.get("year"), "aliases": [row["country_name"]] if row.get("country_name") else []})
    return table("countries", "country", "Our World in Data, energy data (carbon intensity of electricity "
                 "generation), as compiled by CodeCarbon", f"{via} {rel}", rows)


def us_states(root, via):
    rel = "data/private_infra/2023/usa_emissions.json"
    data = read_json(root, rel)
    meta = data.get("_source", {})
    rows = []
    for state, row in sorted(data.items()):
        if state.startswith("_") or not isinstance(row, dict) or "emissions" not in row:
            continue
        rows.append({"name": f"USA/{row['regionCode']}", "label": state,
                     "g_per_kwh": row["emissions"] * KG_PER_LB, "year": meta.get("year", 2023),
                     "published": f"{row['emissions']} lbs/MWh", "aliases": [f"USA/{state}"]})
    return table("us_states", "us-state", f"{meta.get('name', 'U.S. EPA eGRID')} ({meta.get('url', '')}, field "
                 f"{meta.get('field', '?')})", f"{via} {rel}", rows,
                 converted="lbs/MWh x 0.45359237 = g/kWh")


def canada_provinces(root, via):
    from codecarbon.core.emissions import Emissions  # the mix-to-intensity formula is CodeCarbon's: run it here

    rel = "data/private_infra/2023/canada_energy_mix.json"
    rows = []
    for province, mix in sorted(read_json(root, rel).items()):
        g = Emissions._region_energy_mix_to_emissions_rate(mix).kgs_per_kWh * 1000.0
        rows.append({"name": f"CAN/{province}", "label": province, "g_per_kwh": g, "year": 2023})
    return table("canada_provinces", "canada-province", "Canada Energy Regulator generation mix (2023) as compiled "
                 "by CodeCarbon", f"{via} {rel}", rows,
                 converted="intensity computed from each province's generation mix by CodeCarbon's own formula "
                           "(codecarbon.core.emissions.Emissions._region_energy_mix_to_emissions_rate)")


def china_provinces(root, via):
    rel = "data/private_infra/2023/china_provincial_emissions.json"
    data = read_json(root, rel)
    meta = data.get("metadata", {})
    rows = []
    for code, row in sorted(data.get("data", {}).items()):
        rows.append({"name": f"CHN/{code}", "label": row.get("description", code), "g_per_kwh": row["emission_factor"],
                     "year": row.get("year", meta.get("year")), "aliases": [f"CHN/{n}" for n in row.get("names", [])]})
    return table("china_provinces", "china-province", f"{meta.get('source', 'MEE/NBS China')} "
                 f"({meta.get('source_url', '')}); CO2 only", f"{via} {rel}", rows)


def nordic_zones(root, via):
    rel = "data/private_infra/nordic_emissions.json"
    data = read_json(root, rel)
    meta = data.get("metadata", {})
    rows = [{"name": zone, "label": row.get("description", zone), "g_per_kwh": row["emission_factor"],
             "year": row.get("year")} for zone, row in sorted(data.get("data", {}).items())]
    return table("nordic_zones", "nordic-zone", meta.get("source", "ENTSO-E"), f"{via} {rel}", rows,
                 method=meta.get("method", ""))


def cloud_regions(root, via):
    rel = "data/cloud/impact.csv"
    rows = []
    with open(root / rel, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            try:
                g = float(row["impact"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append({"name": f"{row['provider']}:{row['region']}", "label": row.get("source") or "provider",
                         "g_per_kwh": g, "year": None, "country": row.get("countryIsoCode") or ""})
    return table("cloud_regions", "cloud", "the cloud providers' published region figures (each row's label is its "
                 "source; year not stated)", f"{via} {rel}", rows)


def world(root, via):
    rel = "data/private_infra/carbon_intensity_per_source.json"
    data = read_json(root, rel)
    rows = [{"name": "WORLD", "label": "world_average", "g_per_kwh": data["world_average"], "year": None}]
    return table("world", "world", data.get("world_average_source", "IEA"), f"{via} {rel}", rows)


def cpu_tdp(root, version) -> list[tuple[str, float]]:
    rows = []
    with open(root / "data/hardware/cpu_power.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            try:
                rows.append((row["Name"].strip(), float(row["TDP"])))
            except (KeyError, TypeError, ValueError):
                continue
    return rows


def dump(data: dict) -> str:
    """JSON with one region per line, so an update's diff shows the figures that changed."""
    head = {k: v for k, v in data.items() if k != "regions"}
    lines = [json.dumps(row, ensure_ascii=False) for row in data["regions"]]
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    return text + ',\n "regions": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"


def main() -> None:
    root, version = codecarbon_root()
    via = f"CodeCarbon {version} (MIT licence),"
    folder = OUT / "intensity"
    folder.mkdir(parents=True, exist_ok=True)
    for build in (countries, us_states, canada_provinces, china_provinces, nordic_zones, cloud_regions, world):
        data = build(root, via)
        data["codecarbon_version"] = version
        path = folder / f"{data['table']}.json"
        path.write_text(dump(data), encoding="utf-8")
        print(f"{path.relative_to(OUT.parent.parent.parent.parent)}: {len(data['regions'])} regions")
    rows = cpu_tdp(root, version)
    path = OUT / "cpu_tdp.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(f"# CPU TDPs (W) from CodeCarbon {version} (MIT licence) codecarbon/data/hardware/cpu_power.csv; "
                "see README.md\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["name", "tdp_w"])
        writer.writerows((name, f"{tdp:g}") for name, tdp in rows)
    print(f"{path.name}: {len(rows)} CPUs")


if __name__ == "__main__":
    main()
