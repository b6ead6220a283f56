"""Writes ingest_bad_events.jsonl: one bad event per line with the dlq/1
reason and field the spec's rules call for. Each case breaks exactly one
rule of examples/attrition/spec.json on an otherwise valid event; the
expected reason comes from the rule (written here by hand), never from the
code under test. Run: python3 tests/golden/make_ingest_bad_events.py"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE.parents[1] / "examples/attrition/spec.json").read_text())

BASE = {
    "employee_id": "emp-1", "event_id": "ev-1", "event_time": "2026-01-01T09:00:00Z",
    "age": 35, "gender": "female", "marital_status": "married", "education": 3,
    "education_field": "life sciences", "department": "sales", "job_role": "sales executive",
    "job_level": 2, "monthly_income": 5200.5, "percent_salary_hike": 12,
    "stock_option_level": 1, "overtime": "no", "business_travel": "rarely",
    "distance_from_home": 7, "years_at_company": 5, "years_in_current_role": 3,
    "years_since_last_promotion": 1, "years_with_manager": 2, "total_working_years": 10,
    "num_companies_worked": 2, "training_times_last_year": 3, "job_satisfaction": 3,
    "environment_satisfaction": 3, "relationship_satisfaction": 2, "work_life_balance": 3,
    "job_involvement": 3, "performance_rating": 3, "weekly_hours": 42, "remote": False,
    "last_review_at": "2025-06-01T00:00:00Z",
}

cases = []


def add(name, reason, field, payload):
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    cases.append({"case": name, "reason": reason, "field": field, "payload": payload})


def with_(field, value):
    ev = dict(BASE)
    ev[field] = value
    return ev


def without(field):
    ev = dict(BASE)
    del ev[field]
    return ev


fields = {f["name"]: f for f in SPEC["fields"]}
required = [n for n, f in fields.items() if f.get("required")]
ids = [SPEC["event_id"], SPEC["entity"], SPEC["event_time"]]

# missing: absent, null, blank
for n in ids + required:
    add(f"{n} absent", "missing_field", n, without(n))
    add(f"{n} null", "missing_field", n, with_(n, None))
    add(f"{n} blank", "missing_field", n, with_(n, "   "))

# ids of the wrong type or too long
for n in (SPEC["event_id"], SPEC["entity"]):
    add(f"{n} object", "wrong_type", n, with_(n, {"id": 1}))
    add(f"{n} real", "wrong_type", n, with_(n, 1.5))
    add(f"{n} boolean", "wrong_type", n, with_(n, True))
    add(f"{n} 300 chars", "out_of_range", n, with_(n, "x" * 300))

# event time that is not a time
for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z",
            "01/02/2026", [2026, 1, 1], {"t": 1}, True]:
    add(f"event_time {bad!r}", "wrong_type", SPEC["event_time"], with_(SPEC["event_time"], bad))

# numbers: text, objects, arrays, booleans; integers given fractions
for n, f in fields.items():
    if f["type"] in ("numeric", "integer"):
        add(f"{n} text", "wrong_type", n, with_(n, "abc"))
        add(f"{n} text nan", "wrong_type", n, with_(n, "NaN"))
        add(f"{n} object", "wrong_type", n, with_(n, {"v": 1}))
        add(f"{n} array", "wrong_type", n, with_(n, [1]))
        add(f"{n} boolean", "wrong_type", n, with_(n, True))
    if f["type"] == "integer":
        add(f"{n} fraction", "wrong_type", n, with_(n, 2.5))
        add(f"{n} fraction as text", "wrong_type", n, with_(n, "2.5"))
    if f["type"] in ("numeric", "integer") and "min" in f:
        add(f"{n} below min", "out_of_range", n, with_(n, f["min"] - 1))
    if f["type"] in ("numeric", "integer") and "max" in f:
        add(f"{n} above max", "out_of_range", n, with_(n, f["max"] + 1))
        add(f"{n} above max as text", "out_of_range", n, with_(n, str(f["max"] + 10)))
    if f["type"] in ("numeric", "integer"):
        add(f"{n} 1e400", "non_finite", "", with_(n, "__1e400__"))

# booleans
for n, f in fields.items():
    if f["type"] == "boolean":
        for bad in ["maybe", 2, -1, "2", {"b": True}]:
            add(f"{n} {bad!r}", "wrong_type", n, with_(n, bad))

# categories
for n, f in fields.items():
    if f["type"] != "categorical":
        continue
    add(f"{n} object", "wrong_type", n, with_(n, {"c": 1}))
    add(f"{n} array", "wrong_type", n, with_(n, ["a"]))
    add(f"{n} 300 chars", "out_of_range", n, with_(n, "c" * 300))
    if f.get("values") and f.get("unknown", "dlq") == "dlq":
        add(f"{n} unknown", "unknown_category", n, with_(n, "definitely-not-declared"))
        add(f"{n} unknown after trim", "unknown_category", n, with_(n, "  zzz  "))

# timestamps in fields
for n, f in fields.items():
    if f["type"] == "timestamp":
        add(f"{n} text", "wrong_type", n, with_(n, "last tuesday"))
        add(f"{n} object", "wrong_type", n, with_(n, {"t": 1}))

# not an object, not JSON, duplicate keys
for bad in ["[]", "[1, 2]", "1", "\"text\"", "true", "null", "3.14"]:
    add(f"top level {bad}", "not_object", "", bad)
for bad in ['{"a": 1,}', "{'a': 1}", '{"a": NaN}', '{"a": Infinity}', '{a: 1}', "{",
            '{"a": 1} trailing', "not json at all", '{"a": "unterminated}', '{"a": 01}']:
    add(f"bad json {bad[:20]}", "bad_json", "", bad)
body = json.dumps(BASE)
add("duplicate age key", "duplicate_key", "", body[:-1] + ', "age": 40}')
add("duplicate id key", "duplicate_key", "", body[:-1] + ', "event_id": "ev-2"}')
add("duplicate nested key", "duplicate_key", "", body[:-1] + ', "x": {"k": 1, "k": 2}}')

with (HERE / "ingest_bad_events.jsonl").open("w") as f:
    for c in cases:
        # a real 1e400 literal (json.dumps cannot write it)
        c["payload"] = c["payload"].replace('"__1e400__"', "1e400")
        f.write(json.dumps(c) + "\n")
print(f"{len(cases)} cases")
