"""Rendering details that no end-to-end test reaches cheaply: durations and dates."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from taskhub.gateway import render


@pytest.mark.parametrize(
    "seconds, nanos, expected",
    [
        (0, 0, "PT0S"),
        (1, 0, "PT1S"),
        (0, 500_000_000, "PT0.500S"),
        (0, 6_034_000, "PT0.006034S"),
        (0, 1, "PT0.000000001S"),
        (16, 0, "PT16S"),
        (3_661, 0, "PT3661S"),
        (86_400, 0, "P1D"),
        (86_402, 0, "P1DT2S"),
        (2 * 86_400, 10_000_000, "P2DT0.010S"),
        (-1, 0, None),
    ],
)
def test_durations_as_meilisearch_writes_them(seconds, nanos, expected):
    assert render.duration(duration_pb2.Duration(seconds=seconds, nanos=nanos)) == expected


@pytest.mark.parametrize(
    "seconds, nanos, expected",
    [
        (1_628_605_757, 0, "2021-08-10T14:29:17.000000Z"),
        (1_655_732_502, 446_908_000, "2022-06-20T13:41:42.446908Z"),
        (1_655_732_502, 446_908_999, "2022-06-20T13:41:42.446908Z"),
        (0, 1_000, "1970-01-01T00:00:00.000001Z"),
    ],
)
def test_dates_always_have_six_fractional_digits(seconds, nanos, expected):
    assert render.date(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)) == expected


def test_settings_numbers_are_json_numbers_and_unknown_keys_come_last():
    struct = struct_pb2.Struct()
    struct.update(
        {
            "zeta": 1,
            "alpha": 2.5,
            "faceting": {"maxValuesPerFacet": 10, "b": [1, 2.0, "x"]},
            "displayedAttributes": ["*"],
            "nan": float("nan"),
            "inf": float("-inf"),
        }
    )
    rendered = render.settings(struct)
    assert rendered == {
        "displayedAttributes": ["*"],
        "faceting": {"b": [1, 2, "x"], "maxValuesPerFacet": 10},
        "alpha": 2.5,
        "inf": None,
        "nan": None,
        "zeta": 1,
    }
    assert list(rendered) == ["displayedAttributes", "faceting", "alpha", "inf", "nan", "zeta"]
    assert [type(v) for v in rendered["faceting"]["b"]] == [int, int, str]
