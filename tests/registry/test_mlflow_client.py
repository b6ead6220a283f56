"""The official MLflow client (mlflow-skinny, pinned in requirements.txt)
driving the registry: what MlflowClient reads back must be what it wrote."""
import os

import pytest

from conftest import model_doc

# mlflow-skinny is pinned in requirements.txt: a missing client is a failure, not a skip
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


@pytest.fixture(scope="module")
def client(registry, tokens):
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")}
    os.environ["MLFLOW_TRACKING_TOKEN"] = registry.admin
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    yield MlflowClient(tracking_uri=registry.base, registry_uri=registry.base)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def gate(registry, tokens, name, version):
    """Attach a passing model/1 artifact (our API) so the version may serve."""
    p = f"/api/v1/models/{name}/versions/{version}/artifact"
    assert registry.request("PUT", p, raw=model_doc(name, passed=None),
                            token=tokens["trainer"]).status == 201
    g = registry.call("PUT", f"/api/v1/models/{name}/versions/{version}/gates",
                      {"passed": True}, token=tokens["trainer"])
    assert g.status == 200, g


def test_mlflow_client_round_trip(client, registry, tokens):
    rm = client.create_registered_model("mlf-a", tags={"team": "risk"}, description="first")
    assert rm.name == "mlf-a" and rm.description == "first" and rm.tags == {"team": "risk"}
    with pytest.raises(MlflowException) as e:
        client.create_registered_model("mlf-a")
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    mvs = [client.create_model_version("mlf-a", f"s3://bucket/m/{i}", run_id=f"run{i}",
                                       tags={"i": str(i)}, description=f"v{i}")
           for i in range(3)]
    assert [m.version for m in mvs] == ["1", "2", "3"]
    got = client.get_model_version("mlf-a", "2")
    assert got.source == "s3://bucket/m/1" and got.run_id == "run1" and got.tags == {"i": "1"}
    assert got.current_stage == "None"
    # gates guard aliases and serving stages, through MLflow's paths too
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_alias("mlf-a", "champion", "2")
    assert e.value.error_code == "INVALID_STATE"
    gate(registry, tokens, "mlf-a", 2)
    gate(registry, tokens, "mlf-a", 3)
    client.set_registered_model_alias("mlf-a", "champion", "2")
    assert client.get_model_version_by_alias("mlf-a", "champion").version == "2"
    assert client.get_registered_model("mlf-a").aliases == {"champion": "2"}
    client.transition_model_version_stage("mlf-a", "2", "Production")
    client.transition_model_version_stage("mlf-a", "3", "Production",
                                          archive_existing_versions=True)
    stages = {m.version: m.current_stage
              for m in client.search_model_versions("name = 'mlf-a'")}
    assert stages == {"1": "None", "2": "Archived", "3": "Production"}
    latest = client.get_latest_versions("mlf-a", stages=["Production"])
    assert [m.version for m in latest] == ["3"]
    client.update_model_version("mlf-a", "1", description="changed")
    assert client.get_model_version("mlf-a", "1").description == "changed"
    client.set_model_version_tag("mlf-a", "1", "k", "v")
    assert client.get_model_version("mlf-a", "1").tags == {"i": "0", "k": "v"}
    client.delete_model_version_tag("mlf-a", "1", "k")
    client.set_registered_model_tag("mlf-a", "owner", "ml")
    client.delete_registered_model_tag("mlf-a", "team")
    assert client.get_registered_model("mlf-a").tags == {"owner": "ml"}
    client.update_registered_model("mlf-a", description="second")
    assert client.get_registered_model("mlf-a").description == "second"
    names = [m.name for m in client.search_registered_models(filter_string="name LIKE 'mlf-%'")]
    assert names == ["mlf-a"]
    assert client.get_model_version_download_uri("mlf-a", "1") == "s3://bucket/m/0"
    client.delete_registered_model_alias("mlf-a", "champion")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("mlf-a", "champion")
    client.rename_registered_model("mlf-a", "mlf-b")
    assert client.get_registered_model("mlf-b").name == "mlf-b"
    client.delete_model_version("mlf-b", "1")
    assert sorted(m.version for m in client.search_model_versions("name = 'mlf-b'")) == ["2", "3"]
    client.delete_registered_model("mlf-b")
    with pytest.raises(MlflowException) as e:
        client.get_registered_model("mlf-b")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_client_search_pages(client, registry):
    for i in range(5):
        client.create_registered_model(f"mlfp-{i}")
    page = client.search_registered_models(filter_string="name LIKE 'mlfp-%'", max_results=2)
    seen = [m.name for m in page]
    while page.token:
        page = client.search_registered_models(filter_string="name LIKE 'mlfp-%'",
                                               max_results=2, page_token=page.token)
        seen += [m.name for m in page]
    assert seen == [f"mlfp-{i}" for i in range(5)]


def test_mlflow_client_without_token_is_refused(registry):
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    try:
        c = MlflowClient(tracking_uri=registry.base, registry_uri=registry.base)
        with pytest.raises(MlflowException) as e:
            c.get_registered_model("anything")
        assert "401" in str(e.value) or e.value.error_code == "UNAUTHENTICATED"
    finally:
        os.environ["MLFLOW_TRACKING_TOKEN"] = registry.admin
