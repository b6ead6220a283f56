"""Data for bench/score.sh: a training CSV for bench/score_spec.json with the
load generator's value distributions (bench/loadgen.c body_new) plus two
profile fields and a synthetic fraud label, and the Redis online rows of the
load generator's entities (cust-000000..) in the Redis protocol, for
`redis-cli --pipe`.

Usage: python bench/score_data.py TRAIN.csv ROWS.resp [--rows N] [--entities N]
"""
import argparse
import csv
import math

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("rows")
    ap.add_argument("--rows", dest="n", type=int, default=20000)
    ap.add_argument("--entities", type=int, default=10000)
    a = ap.parse_args()
    rng = np.random.default_rng(20261202)
    cats = {
        "currency": ["EUR", "USD", "GBP", "CHF", "SEK"],
        "merchant_category": ["grocery", "fuel", "travel", "electronics", "restaurants",
                              "apparel", "health", "entertainment", "utilities", "other"],
        "channel": ["web", "mobile_app", "pos", "atm", "phone"],
        "device": ["ios", "android", "desktop", "tablet", "unknown"],
        "country": ["DE", "FR", "NL", "GB", "US", "ES", "IT", "PL", "SE"],
        "plan": ["free", "basic", "gold", "platinum"],
        "segment": ["retail", "smb", "corporate", "student"],
    }
    tiers = ["low", "mid", "high"]
    ent = a.entities
    tenure = rng.integers(0, 3650, ent)
    tier = rng.choice(3, ent, p=[0.6, 0.3, 0.1])
    with open(a.train, "w", newline="") as f:
        w = csv.writer(f)
        cols = ["event_id", "entity_id", "event_time", "amount", *cats, "latitude", "longitude",
                "distance_from_home_km", "ip_risk_score", "card_present", "is_international",
                "account_age_days", "age", "balance", "credit_limit", "txn_count_24h",
                "txn_count_7d", "amount_avg_30d", "amount_max_30d", "customer_tenure_days",
                "risk_tier", "fraud"]
        w.writerow(cols)
        for i in range(a.n):
            e = int(rng.integers(ent))
            u = rng.random(12)
            amount = math.exp(3.0 + 3.0 * u[0])
            c = {k: v[int(rng.integers(len(v)))] for k, v in cats.items()}
            dist = 2000.0 * u[1] * u[2]
            risk = u[3]
            intl = u[4] < 0.1
            margin = (-4.0 + 3.0 * risk + 1.2 * intl + 1.0 * (tier[e] == 2) + 0.0008 * dist
                      - 0.0004 * tenure[e] + 0.5 * (c["channel"] == "web") + 0.15 * math.log(amount))
            fraud = rng.random() < 1 / (1 + math.exp(-margin))
            w.writerow([f"t-{i}", f"cust-{e:06d}", f"2026-01-01T00:00:{i % 60:02d}Z",
                        f"{amount:.2f}", *c.values(), f"{35 + 25 * u[5]:.4f}",
                        f"{-10 + 40 * u[6]:.4f}", f"{dist:.1f}", f"{risk:.4f}",
                        "true" if u[7] < 0.5 else "false", "true" if intl else "false",
                        int(rng.integers(5000)), 18 + int(rng.integers(70)),
                        f"{20000 * u[8] - 500:.2f}", 500 * (1 + int(rng.integers(40))),
                        int(rng.integers(30)), int(rng.integers(120)),
                        f"{amount * (0.5 + u[9]):.2f}", f"{amount * (1 + 4 * u[10]):.2f}",
                        int(tenure[e]), tiers[tier[e]], "yes" if fraud else "no"])

    def resp(*args):
        out = [f"*{len(args)}\r\n".encode()]
        for x in args:
            b = str(x).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    with open(a.rows, "wb") as f:
        for e in range(ent):
            key = f"mlops:online:bench_score:cust-{e:06d}"
            f.write(resp("HSET", key, "_ts", 1767225600000, "customer_tenure_days",
                         int(tenure[e]), "risk_tier", tiers[tier[e]]))
            f.write(resp("PEXPIRE", key, 86400000))


if __name__ == "__main__":
    main()
