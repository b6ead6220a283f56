"""Fixtures for the mlops-ingest tests: the real binary on the real broker,
with unique topics, group and spec name (so Redis keys are private too)."""
import json
import os
import uuid
from pathlib import Path

import pytest
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from kafkatest import (BROKERS, admin, consume_all, create_topics,  # noqa: E402,F401
                       delete_topics, produce)
from proctest import ServiceProc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
# the stack's Redis (MLOPS_* is kept out of the process's environment, so name it)
REDIS_URL = os.environ.get("MLOPS_TEST_REDIS_URL", "redis://127.0.0.1:6380")
SCALE = 10 if os.environ.get("MLOPS_TEST_SCALE") == "soak" else 1
SCHEMAS = ROOT / "schemas"


class Ingest(ServiceProc):
    """One mlops-ingest process and its topics."""

    def __init__(self, tmp_path, exactly_once=True, extra=(), spec_patch=None, partitions=3):
        self.id = uuid.uuid4().hex[:10]
        self.tmp = tmp_path
        self.input = f"it-in-{self.id}"
        self.features = f"it-features-{self.id}"
        self.dlq = f"it-dlq-{self.id}"
        self.group = f"it-ingest-{self.id}"
        create_topics([self.input, self.features, self.dlq], partitions)
        spec = json.loads((ROOT / "examples/attrition/spec.json").read_text())
        spec["name"] = f"t{self.id}"
        spec["online"]["view"] = f"t{self.id}"
        if spec_patch:
            spec_patch(spec)
        self.spec = spec
        self.spec_path = tmp_path / f"spec-{self.id}.json"
        self.spec_path.write_text(json.dumps(spec))
        self.args = [str(BUILD / "services/ingest/mlops-ingest"), "--spec", str(self.spec_path),
                     "--input-topic", self.input, "--features-topic", self.features,
                     "--dlq-topic", self.dlq, "--group-id", self.group, "--metrics-port", "0",
                     "--kafka-brokers", BROKERS, "--redis-url", REDIS_URL,
                     "--exactly-once" if exactly_once else "--no-exactly-once",
                     "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=2000",
                     "-X", "transaction.timeout.ms=15000", *extra]
        self.exactly_once = exactly_once
        super().__init__("ingest", self.args, up_timeout=20)
        self.start()

    def close(self):
        super().close()
        delete_topics([self.input, self.features, self.dlq])


@pytest.fixture
def ingest_factory(tmp_path):
    made = []

    def make(**kw):
        ig = Ingest(tmp_path, **kw)
        made.append(ig)
        return ig

    yield make
    for ig in made:
        ig.close()


def valid_event(i, entity=None, t0=1767225600000, **over):
    """A valid attrition event (independent of the code under test)."""
    ev = {
        "employee_id": entity or f"emp-{i % 50}",
        "event_id": f"ev-{i}",
        "event_time": t0 + i * 60000,
        "age": 25 + i % 30,
        "gender": ["Female", "male", " OTHER "][i % 3],
        "marital_status": ["single", "married", "divorced"][i % 3],
        "education": 1 + i % 5,
        "education_field": "Life Sciences",
        "department": ["Sales", "Research & Development", "human resources"][i % 3],
        "job_role": ["Sales Executive", "Research Scientist", "Manager"][i % 3],
        "job_level": 1 + i % 5,
        "monthly_income": 2000 + 37 * (i % 300),
        "percent_salary_hike": 11 + i % 10,
        "stock_option_level": i % 4,
        "overtime": ["yes", "no"][i % 2],
        "business_travel": ["rarely", "frequently", "none"][i % 3],
        "distance_from_home": i % 30,
        "years_at_company": i % 20,
        "years_in_current_role": i % 10,
        "years_since_last_promotion": i % 7,
        "years_with_manager": i % 8,
        "total_working_years": 5 + i % 20,
        "num_companies_worked": i % 9,
        "training_times_last_year": i % 6,
        "job_satisfaction": 1 + i % 4,
        "environment_satisfaction": 1 + (i + 1) % 4,
        "relationship_satisfaction": 1 + (i + 2) % 4,
        "work_life_balance": 1 + (i + 3) % 4,
        "job_involvement": 1 + i % 4,
        "performance_rating": 3 + i % 2,
        "weekly_hours": 35 + i % 20,
        "remote": i % 5 == 0,
        "last_review_at": "2025-06-01T00:00:00Z",
    }
    ev.update(over)
    return ev


def load_schema(name):
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validator(name):
    import jsonschema
    from referencing import Registry, Resource
    reg = Registry()
    for n in ("features", "dlq", "label"):
        s = load_schema(n)
        reg = reg.with_resource(s["$id"], Resource.from_contents(s))
    return jsonschema.Draft202012Validator(load_schema(name), registry=reg)
