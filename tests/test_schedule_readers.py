"""Grid-intensity readers (greenlm.measure.grid_series): each format from small files, unit conversion, times
(offsets, UTC columns, daylight-saving local times), gaps, duplicates, sub-hourly steps, and refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import GridSeries, read_greenlm_rows

LB_PER_MWH_IN_G_PER_KWH = 0.45359237
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon" / "eia930_us_balancing_authorities_2022_hourly.csv"


def write(tmp_path: Path, text: str, name: str = "series.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_greenlm_csv_two_regions_and_a_gap(tmp_path):
    path = write(tmp_path, "timestamp_utc,region,gco2_per_kwh\n"
                           "2022-01-01T00:00:00Z,CISO,100\n2022-01-01T01:00:00Z,CISO,110\n2022-01-01T03:00:00Z,CISO,130\n"
                           "2022-01-01T00:00:00Z,BPAT,20\n2022-01-01T01:00:00+00:00,BPAT,21\n")
    series = GridSeries.load(path, kind="average", scope="lifecycle")
    assert series.regions == ("BPAT", "CISO")
    assert series.start_s == 1640995200 and series.n_hours == 4
    np.testing.assert_array_equal(series.values("CISO"), [100, 110, np.nan, 130])
    assert series.missing_hours("CISO", 0, 4) == ["2022-01-01T02:00Z"]
    assert series.missing_hours("BPAT", 0, 5) == ["2022-01-01T02:00Z", "2022-01-01T03:00Z", "2022-01-01T04:00Z"]
    assert series.source.label.endswith("(greenlm-csv; average, lifecycle; g/kWh; hourly)")
    assert "missing" in " ".join(series.source.notes)
    with pytest.raises(GreenlmError, match=r"no CISO value for 2022-01-01T02:00Z of the window"):
        series.window("CISO", 0, 4)
    assert series.region_name("ciso") == "CISO"
    with pytest.raises(GreenlmError, match=r"unknown region 'CISOO'.*closest: CISO"):
        series.values("CISOO")


def test_greenlm_csv_kind_and_scope_default_to_unstated(tmp_path):
    path = write(tmp_path, "timestamp_utc,region,gco2_per_kwh\n2022-01-01T00:00:00Z,X,1\n")
    assert "kind unstated, scope unstated" in GridSeries.load(path).source.label


def test_greenlm_rows_are_the_one_parser_of_the_format(tmp_path):
    path = write(tmp_path, "timestamp_utc,region,gco2_per_kwh\n2022-01-01T00:00:00Z,CISO,1\n2022-01-01T00:00:00+00:00,CISO,2\n")
    with pytest.raises(GreenlmError, match=r":3: CISO .* already given on line 2"):
        read_greenlm_rows(path)
    with pytest.raises(GreenlmError, match=r":3: CISO .* already given on line 2"):
        GridSeries.load(path)


def test_sub_hourly_rows_average_into_clock_hours(tmp_path):
    rows = ["timestamp_utc,region,gco2_per_kwh"]
    for minute in range(0, 120, 15):
        rows.append(f"2022-01-01T{minute // 60:02d}:{minute % 60:02d}:00Z,DE,{minute}")
    series = GridSeries.load(write(tmp_path, "\n".join(rows) + "\n"))
    np.testing.assert_allclose(series.values("DE"), [22.5, 82.5])  # mean of 0,15,30,45 and of 60..105
    assert series.source.step_s == 900
    assert "15-minute rows averaged" in series.source.notes[0]


def test_hourly_rows_off_the_hour_and_coarse_steps_are_refused(tmp_path):
    off = write(tmp_path, "timestamp_utc,region,gco2_per_kwh\n2022-01-01T00:30:00Z,X,1\n2022-01-01T01:30:00Z,X,2\n"
                          "2022-01-01T02:30:00Z,X,3\n")
    with pytest.raises(GreenlmError, match=r":2: 2022-01-01T00:30Z is not on the UTC hour"):
        GridSeries.load(off)
    daily = write(tmp_path, "timestamp_utc,region,gco2_per_kwh\n2022-01-01T00:00:00Z,X,1\n2022-01-02T00:00:00Z,X,2\n",
                  "daily.csv")
    with pytest.raises(GreenlmError, match=r"24 h apart .* hourly or finer"):
        GridSeries.load(daily)


ELECTRICITY_MAPS = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,Data Estimated,"
    "Data Estimation Method\n"
    "2022-01-01 00:00:00,Germany,Germany,DE,400.5,450.25,40,35,entsoe.eu,false,\n"
    "2022-01-01 01:00:00,Germany,Germany,DE,380,430,41,36,entsoe.eu,false,\n"
    "2022-01-01 02:00:00,Germany,Germany,DE,,,,,entsoe.eu,true,\n"
    "2022-01-01 03:00:00,Germany,Germany,DE,360,410,43,38,entsoe.eu,false,\n"
)


def test_electricity_maps_export_lifecycle_and_direct(tmp_path):
    path = write(tmp_path, ELECTRICITY_MAPS, "DE_2022_hourly.csv")
    lca = GridSeries.load(path)
    assert lca.regions == ("DE",)
    np.testing.assert_array_equal(lca.values("DE"), [450.25, 430, np.nan, 410])  # an empty cell is a gap
    assert lca.source.column == "Carbon Intensity gCO₂eq/kWh (LCA)"
    assert (lca.source.format, lca.source.kind, lca.source.scope) == ("electricitymaps", "average", "lifecycle")
    direct = GridSeries.load(path, scope="direct")
    np.testing.assert_array_equal(direct.values("DE"), [400.5, 380, np.nan, 360])
    assert "(direct)" in direct.source.label


def test_electricity_maps_newer_life_cycle_header(tmp_path):
    text = ("Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
            "Carbon Intensity gCO₂eq/kWh (life cycle assessment)\n2023-05-01T10:00:00Z,FR,30,55\n")
    series = GridSeries.load(write(tmp_path, text))
    assert series.values("FR")[0] == 55 and series.source.scope == "lifecycle"


def test_watttime_moer_csv_is_converted_and_averaged(tmp_path):
    rows = ["point_time,value,frequency,market,version,region"]
    for minute in range(0, 60, 5):
        rows.append(f"2023-01-01T00:{minute:02d}:00+00:00,{1000 + minute},300,RTM,3.2,CAISO_NORTH")
    series = GridSeries.load(write(tmp_path, "\n".join(rows) + "\n", "moer.csv"))
    mean_lbs = np.mean([1000 + m for m in range(0, 60, 5)])
    assert series.regions == ("CAISO_NORTH",)
    assert series.values("CAISO_NORTH")[0] == pytest.approx(mean_lbs * LB_PER_MWH_IN_G_PER_KWH)
    assert (series.source.kind, series.source.scope, series.source.unit) == ("marginal", "direct", "lbs/MWh")
    assert "lbs/MWh converted to g/kWh" in series.source.label and "5-min steps" in series.source.label


def test_watttime_v2_download_without_a_region_takes_the_given_name(tmp_path):
    text = "timestamp,MOER\n2019-02-28 00:00:00+00:00,466\n2019-02-28 01:00:00+00:00,426\n"
    series = GridSeries.load(write(tmp_path, text, "MOERS.csv"), region="CAISO_NP15")
    assert series.regions == ("CAISO_NP15",)
    np.testing.assert_allclose(series.values("CAISO_NP15"), np.array([466, 426]) * LB_PER_MWH_IN_G_PER_KWH)
    assert GridSeries.load(write(tmp_path, text, "other.csv")).regions == ("other",)  # the file's stem


def test_watttime_json(tmp_path):
    doc = {"meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh"},
           "data": [{"point_time": "2024-01-01T00:00:00+00:00", "value": 900.0, "version": "3.2"},
                    {"point_time": "2024-01-01T01:00:00+00:00", "value": 1000.0, "version": "3.2"}]}
    path = write(tmp_path, json.dumps(doc), "moer.json")
    series = GridSeries.load(path)
    np.testing.assert_allclose(series.values("CAISO_NORTH"), [900 * LB_PER_MWH_IN_G_PER_KWH, 1000 * LB_PER_MWH_IN_G_PER_KWH])
    assert series.source.kind == "marginal"


def test_times_with_offsets_become_utc(tmp_path):
    text = "point_time,value,region\n2022-07-01T00:00:00-07:00,100,X\n2022-07-01T08:00:00+00:00,200,X\n"
    series = GridSeries.load(write(tmp_path, text))
    assert series.start_s == 1656658800  # 2022-07-01T07:00Z
    np.testing.assert_allclose(series.values("X"), np.array([100, 200]) * LB_PER_MWH_IN_G_PER_KWH)


def test_naive_local_times_need_a_zone_and_dst_ambiguity_is_refused(tmp_path):
    text = "timestamp,MOER,ba\n2022-11-06 00:00:00,1,X\n2022-11-06 01:00:00,2,X\n2022-11-06 02:00:00,3,X\n"
    path = write(tmp_path, text)
    with pytest.raises(GreenlmError, match=r":2: timestamp '2022-11-06 00:00:00' has no UTC offset .*--timezone"):
        GridSeries.load(path)
    with pytest.raises(GreenlmError, match=r":3: timestamp '2022-11-06 01:00:00' is ambiguous in America/Los_Angeles"):
        GridSeries.load(path, timezone_name="America/Los_Angeles")
    spring = write(tmp_path, "timestamp,MOER,ba\n2022-03-13 01:00:00,1,X\n2022-03-13 02:00:00,2,X\n", "spring.csv")
    with pytest.raises(GreenlmError, match=r":3: .*'2022-03-13 02:00:00' does not exist in America/Los_Angeles"):
        GridSeries.load(spring, timezone_name="America/Los_Angeles")
    summer = write(tmp_path, "timestamp,MOER,ba\n2022-07-01 00:00:00,1,X\n2022-07-01 01:00:00,2,X\n", "summer.csv")
    assert GridSeries.load(summer, timezone_name="America/Los_Angeles").start_s == 1656658800  # PDT = UTC-7
    with pytest.raises(GreenlmError, match=r"unknown time zone 'Mars/Olympus'"):
        GridSeries.load(summer, timezone_name="Mars/Olympus")


def test_duplicates_same_value_dropped_different_refused(tmp_path):
    same = write(tmp_path, "point_time,value,region\n2022-01-01T00:00Z,5,X\n2022-01-01T00:00Z,5,X\n2022-01-01T01:00Z,6,X\n")
    series = GridSeries.load(same)
    assert series.n_hours == 2 and "dropped 1 repeated" in " ".join(series.source.notes)
    differ = write(tmp_path, "point_time,value,region\n2022-01-01T00:00Z,5,X\n2022-01-01T00:00Z,7,X\n", "d.csv")
    with pytest.raises(GreenlmError, match=r":3: X 2022-01-01T00:00Z given twice with different values \(also at 2\)"):
        GridSeries.load(differ)


def test_unknown_format_names_the_columns_found(tmp_path):
    path = write(tmp_path, "when,where,how_much\n2022-01-01,X,1\n")
    with pytest.raises(GreenlmError, match=r"not a grid-intensity file greenlm reads; columns found: when, where, how_much"):
        GridSeries.load(path)
    with pytest.raises(GreenlmError, match="does not exist"):
        GridSeries.load(tmp_path / "nope.csv")


def test_bad_values_name_the_line(tmp_path):
    path = write(tmp_path, "point_time,value,region\n2022-01-01T00:00Z,5,X\n2022-01-01T01:00Z,-1,X\n")
    with pytest.raises(GreenlmError, match=r":3: value '-1' must be a finite number >= 0"):
        GridSeries.load(path)
    path = write(tmp_path, "point_time,value,region\nyesterday,5,X\n", "t.csv")
    with pytest.raises(GreenlmError, match=r":2: point_time 'yesterday' is not an ISO-8601 time"):
        GridSeries.load(path)


@pytest.mark.skipif(not SHARED.exists(), reason="shared carbon data not present")
def test_shared_eia_file_loads_as_arrays():
    series = GridSeries.load(SHARED, kind="average", scope="lifecycle")
    assert series.regions == ("AZPS", "BPAT", "CISO", "ERCO", "MISO", "NYIS", "PJM", "SOCO")
    assert series.n_hours == 8760
    assert int(np.isnan(series.values("PJM")).sum()) == 23 and int(np.isnan(series.values("CISO")).sum()) == 3
    assert math.isclose(series.mean("BPAT"), 55, abs_tol=1)  # README: mean 55
