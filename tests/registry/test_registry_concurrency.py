"""Concurrent promotions of different versions to one alias, all with the
same expected_version: exactly one wins each round, the others get 409, and
the database never holds two versions for the alias."""
import os
import threading

from conftest import model_doc

ROUNDS = 100 if os.environ.get("MLOPS_TEST_SCALE") == "soak" else 20
WORKERS = 20


def test_concurrent_promotions_one_winner(registry, db, tokens):
    t = tokens["trainer"]
    versions = []
    for _ in range(WORKERS + 1):
        r = registry.request("POST", "/api/v1/models/conc-a/versions", raw=model_doc("conc-a"),
                             token=t)
        assert r.status == 201, r
        versions.append(int(r.json()["model_version"]["version"]))
    P = "/api/v1/models/conc-a/aliases/champion/promote"
    assert registry.post(P, {"version": versions[0], "expected_version": None}).status == 200
    holder = versions[0]
    for rnd in range(ROUNDS):
        contenders = [v for v in versions if v != holder][:WORKERS]
        results = [None] * WORKERS
        barrier = threading.Barrier(WORKERS)

        def go(i):
            barrier.wait()
            results[i] = registry.post(P, {"version": contenders[i], "expected_version": holder})

        threads = [threading.Thread(target=go, args=(i,)) for i in range(WORKERS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        codes = sorted(r.status for r in results)
        assert codes == [200] + [409] * (WORKERS - 1), (rnd, [r for r in results])
        assert all(r.json()["error_code"] == "RESOURCE_CONFLICT" for r in results if r.status == 409)
        winner = contenders[[r.status for r in results].index(200)]
        rows = db.sql("SELECT v.version FROM model_aliases a JOIN model_versions v"
                      " ON v.id = a.version_id JOIN registered_models m ON m.id = a.model_id"
                      " WHERE m.name = 'conc-a' AND a.alias = 'champion'")
        assert rows == [str(winner)], (rnd, rows)
        holder = winner
    hist = db.sql("SELECT count(*) FROM alias_history h JOIN registered_models m"
                  " ON m.id = h.model_id WHERE m.name = 'conc-a'")
    assert hist == [str(ROUNDS + 1)]
