#!/usr/bin/env python3
"""Scores `rules backtest --json` output against the independent generator's ground truth.

Runs nothing itself. Reads:
  --truth   truth.json written by generate.py
  --events  JSON lines printed by `rules backtest --json`

Scoring (fixed before any run, identical for every rule):
  * An ORDER is a firing alert whose action is an order and that no incident suppressed, an
    escalation that turns an alert-only episode into an order (counted at the escalation), or a
    firing incident whose action is an order.
  * A fault that led to a complaint is PRE-EMPTIVE when an order on its device (for a village
    fault: an incident covering its village) was created at or after the fault start and before
    the first complaint. Otherwise it is MISSED. Lead = complaint - first such order.
  * Faults nobody complained about are reported apart: DETECTED when an order on the device
    (incident for the village) falls in [start, end + 24 h] (end = end of recording if open).
  * A FALSE ORDER is a device order with no fault of that device, and no village fault of its
    village, active at that time, "active" meaning [start, end + 24 h]; an incident order is
    false when no village fault of that village is active. Traps overlapping a false order
    are listed to show what it was.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone

BJ = timezone(timedelta(hours=8))
DAY_MS = 86_400_000
H_MS = 3_600_000


def local(ms):
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, BJ).strftime("%m-%d %H:%M")


def hours(ms):
    return "%.1f h" % (ms / H_MS) if ms is not None else "-"


def is_order(action):
    return isinstance(action, dict) and "order" in action


def load_events(path):
    orders = []            # dict(device, rule, at, kind='device'|'incident', village, township)
    suppressed = []
    alerts_only = []
    episodes = {}
    report = None
    bad = 0
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            ev = e.get("event")
            if ev == "alert":
                a = e["alert"]
                if str(a.get("kind", "")).lower() != "firing":
                    continue
                rec = {"device": a.get("device_id"), "rule": a.get("rule_id"),
                       "at": a.get("at_ms"), "source": "device",
                       "episode": a.get("episode_id"), "severity": a.get("severity")}
                episodes[a.get("episode_id")] = is_order(a.get("action"))
                if is_order(a.get("action")):
                    rec["category"] = a["action"]["order"].get("category")
                    if a.get("suppressed_by"):
                        rec["suppressed_by"] = a.get("suppressed_by")
                        suppressed.append(rec)
                    else:
                        orders.append(rec)
                else:
                    alerts_only.append(rec)
            elif ev == "escalation":
                x = e["escalation"]
                ep = x.get("episode_id")
                if is_order(x.get("action")) and not episodes.get(ep, False):
                    episodes[ep] = True
                    orders.append({"device": x.get("device_id"), "rule": x.get("rule_id"),
                                   "at": x.get("at_ms"), "source": "escalation", "episode": ep,
                                   "category": x["action"]["order"].get("category")})
            elif ev == "incident":
                i = e["incident"]
                if str(i.get("kind", "")).lower() != "firing":
                    continue
                g = i.get("group") or {}
                if isinstance(g, str):
                    parts = g.replace(":", "/").split("/")
                    g = {"township": parts[0] if parts else None,
                         "village": parts[1] if len(parts) > 1 else None}
                rec = {"device": None, "rule": i.get("fleet_rule_id"), "at": i.get("at_ms"),
                       "source": "incident", "village": g.get("village"),
                       "township": g.get("township"), "level": i.get("level"),
                       "devices": i.get("devices") or []}
                if is_order(i.get("action")):
                    rec["category"] = i["action"]["order"].get("category")
                    orders.append(rec)
                else:
                    alerts_only.append(rec)
            elif ev == "report":
                report = e.get("report")
    orders.sort(key=lambda r: r["at"])
    return orders, suppressed, alerts_only, report, bad


def covers(incident, fault):
    if incident["village"] is not None:
        return incident["village"] == fault["village"]
    return incident.get("township") is not None and incident["township"] == fault.get("township")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--json", help="also write the scores as JSON to this file")
    args = ap.parse_args()

    truth = json.load(open(args.truth))
    meta = truth["meta"]
    rec_end = meta["end_ms"]
    faults = truth["faults"]
    traps = truth["traps"]
    village_of = {}
    for f in faults:
        if f.get("device"):
            village_of[f["device"]] = f["village"]
    dev_village = {}
    for t in traps:
        if t.get("device"):
            dev_village[t["device"]] = t.get("village")
    orders, suppressed, alerts_only, report, bad = load_events(args.events)
    # device -> village from the devices file beside truth.json, if present
    try:
        import os
        devs = json.load(open(os.path.join(os.path.dirname(args.truth), "devices.json")))
        for d in devs:
            dev_village[d["device_id"]] = d.get("village")
    except OSError:
        pass

    def active_end(f):
        return (f["end_ms"] if f["end_ms"] is not None else rec_end) + DAY_MS

    dev_faults = defaultdict(list)
    vil_faults = defaultdict(list)
    for f in faults:
        if f["scope"] == "device":
            dev_faults[f["device"]].append(f)
        else:
            vil_faults[f["village"]].append(f)

    # ---- faults
    results = []
    for f in faults:
        comp = f["complaint_ms"]
        if f["scope"] == "device":
            cands = [o for o in orders if o["source"] != "incident" and o["device"] == f["device"]]
        else:
            cands = [o for o in orders if o["source"] == "incident" and covers(o, f)]
        pre = [o for o in cands if f["start_ms"] <= o["at"] and (comp is None or o["at"] < comp)]
        win = [o for o in cands if f["start_ms"] <= o["at"] <= active_end(f)]
        r = {"id": f["id"], "kind": f["kind"], "device": f["device"], "village": f["village"],
             "profile": f.get("profile"), "coded": f["coded"], "start": f["start_ms"],
             "complaint": comp, "end": f["end_ms"]}
        if comp is not None:
            r["complained"] = True
            r["preemptive"] = bool(pre)
            if pre:
                r["first_order"] = {"rule": pre[0]["rule"], "at": pre[0]["at"]}
                r["lead_ms"] = comp - pre[0]["at"]
                r["rules_before_complaint"] = sorted({o["rule"] for o in pre})
            else:
                late = [o for o in win if o["at"] >= comp]
                if late:
                    r["late_order"] = {"rule": late[0]["rule"], "at": late[0]["at"],
                                       "after_complaint_ms": late[0]["at"] - comp}
                if f["scope"] == "device":
                    al = [a for a in alerts_only if a["device"] == f["device"] and
                          f["start_ms"] <= a["at"] < comp]
                    if al:
                        r["alerts_only_before_complaint"] = sorted({a["rule"] for a in al})
        else:
            r["complained"] = False
            r["detected"] = bool(win)
            if win:
                r["first_order"] = {"rule": win[0]["rule"], "at": win[0]["at"],
                                    "after_start_ms": win[0]["at"] - f["start_ms"]}
        results.append(r)

    # ---- orders: attribution
    false_orders = []
    true_orders = []
    for o in orders:
        t = o["at"]
        if o["source"] == "incident":
            act = [f for f in vil_faults.get(o["village"], []) if f["start_ms"] <= t <= active_end(f)]
        else:
            v = dev_village.get(o["device"])
            act = [f for f in dev_faults.get(o["device"], []) if f["start_ms"] <= t <= active_end(f)]
            act += [f for f in vil_faults.get(v, []) if f["start_ms"] <= t <= active_end(f)
                    and (f["kind"] == "village_power_outage" or
                         (o["device"] or "").endswith("-gb"))]
        if act:
            o["fault"] = act[0]["id"]
            true_orders.append(o)
        else:
            ctx = []
            for tr in traps:
                hit = (tr["scope"] == "district" or
                       (tr["scope"] == "device" and tr.get("device") == o["device"]) or
                       (o["source"] == "incident" and tr.get("village") == o.get("village")))
                if hit and tr["start_ms"] - H_MS <= t <= tr["end_ms"] + 12 * H_MS:
                    ctx.append(tr["kind"])
            core = meta["weather"]["cold_core"]
            if core[0] <= t <= core[1]:
                ctx.append("cold_wave_core(weather)")
            o["context"] = sorted(set(ctx))
            false_orders.append(o)

    # ---- aggregate
    def median(xs):
        return statistics.median(xs) if xs else None

    comp_res = [r for r in results if r["complained"]]
    quiet_res = [r for r in results if not r["complained"]]
    by_kind = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    rules = defaultdict(lambda: {"orders": 0, "true": 0, "false": 0, "first_preemptive": 0,
                                 "preemptive_in": 0})
    for o in true_orders:
        rules[o["rule"]]["orders"] += 1
        rules[o["rule"]]["true"] += 1
    for o in false_orders:
        rules[o["rule"]]["orders"] += 1
        rules[o["rule"]]["false"] += 1
    for r in comp_res:
        if r.get("preemptive"):
            rules[r["first_order"]["rule"]]["first_preemptive"] += 1
            for rule in r["rules_before_complaint"]:
                rules[rule]["preemptive_in"] += 1

    out = []
    p = out.append
    n_dev = len(meta.get("profiles", {}))
    dd = n_dev * meta["days"]
    p("INDEPENDENT WINTER CARD  seed=%s  households=%s  days=%s  every=%ss  lines=%s"
      % (meta["seed"], meta["households"], meta["days"], meta["every_s"], meta.get("lines")))
    p("period %s .. %s (UTC+8), min outdoor %.1f C, cold wave core %s .. %s"
      % (local(meta["start_ms"]), local(meta["end_ms"]), meta["weather"]["min_outdoor_c"],
         local(meta["weather"]["cold_core"][0]), local(meta["weather"]["cold_core"][1])))
    if report:
        p("backtest: %s readings, %s bad lines, %s orders reported by the engine"
          % (report.get("readings_total"), report.get("bad_lines_total"),
             report.get("orders_total")))
    pre_n = sum(1 for r in comp_res if r["preemptive"])
    leads = [r["lead_ms"] for r in comp_res if r.get("preemptive")]
    p("")
    p("PRE-EMPTIVE (faults with a complaint): %d / %d = %s   median lead %s"
      % (pre_n, len(comp_res), ("%.0f %%" % (100.0 * pre_n / len(comp_res))) if comp_res else "-",
         hours(median(leads))))
    for label, sel in (("  with a fault code before the complaint", lambda r: r["coded"]),
                       ("  no fault code before the complaint   ", lambda r: not r["coded"])):
        rs = [r for r in comp_res if sel(r)]
        k = sum(1 for r in rs if r["preemptive"])
        p("%s: %d / %d" % (label, k, len(rs)))
    qd = sum(1 for r in quiet_res if r["detected"])
    p("NO COMPLAINT (reported apart): %d faults, %d detected by an order" % (len(quiet_res), qd))
    tot = len(orders)
    p("ORDERS: %d total, %d attributed to a fault, %d FALSE (share %s, %.2f per 1000 device-days)"
      % (tot, len(true_orders), len(false_orders),
         ("%.0f %%" % (100.0 * len(false_orders) / tot)) if tot else "-",
         1000.0 * len(false_orders) / dd if dd else 0.0))
    p("  (%d further orders were suppressed by an incident and are not counted; "
      "%d alert-only firings)" % (len(suppressed), len(alerts_only)))

    p("")
    p("BY FAULT KIND")
    p("%-30s %4s %5s %5s %7s %9s %6s %6s" % ("kind", "n", "compl", "pre", "rate", "med lead",
                                              "quiet", "det"))
    for kind in sorted(by_kind):
        rs = by_kind[kind]
        c = [r for r in rs if r["complained"]]
        k = sum(1 for r in c if r["preemptive"])
        q = [r for r in rs if not r["complained"]]
        ld = [r["lead_ms"] for r in c if r.get("preemptive")]
        p("%-30s %4d %5d %5d %7s %9s %6d %6d" % (
            kind, len(rs), len(c), k, ("%.0f %%" % (100.0 * k / len(c))) if c else "-",
            hours(median(ld)), len(q), sum(1 for r in q if r["detected"])))

    p("")
    p("BY RULE (orders)")
    p("%-28s %6s %6s %6s %8s %10s %10s" % ("rule", "orders", "true", "false", "false %",
                                           "1st pre", "in pre"))
    for rule in sorted(rules):
        x = rules[rule]
        p("%-28s %6d %6d %6d %8s %10d %10d" % (
            rule, x["orders"], x["true"], x["false"],
            ("%.0f %%" % (100.0 * x["false"] / x["orders"])) if x["orders"] else "-",
            x["first_preemptive"], x["preemptive_in"]))

    p("")
    p("MISSES (complaint came first)")
    for r in sorted(comp_res, key=lambda r: r["start"]):
        if r["preemptive"]:
            continue
        extra = []
        if r.get("late_order"):
            extra.append("first order %s %s after the complaint"
                         % (r["late_order"]["rule"], hours(r["late_order"]["after_complaint_ms"])))
        else:
            extra.append("no order in the fault window")
        if r.get("alerts_only_before_complaint"):
            extra.append("alert-only before: " + ",".join(r["alerts_only_before_complaint"]))
        p("  %-28s %-12s %-15s %s start %s complaint %s coded=%s; %s" % (
            r["kind"], r["device"] or r["village"], r["profile"] or "", "",
            local(r["start"]), local(r["complaint"]), "yes" if r["coded"] else "no",
            "; ".join(extra)))
    p("")
    p("PRE-EMPTIVE HITS")
    for r in sorted(comp_res, key=lambda r: r["start"]):
        if not r["preemptive"]:
            continue
        p("  %-28s %-12s start %s first order %s %s, complaint %s (lead %s)" % (
            r["kind"], r["device"] or r["village"], local(r["start"]), r["first_order"]["rule"],
            local(r["first_order"]["at"]), local(r["complaint"]), hours(r["lead_ms"])))
    p("")
    p("FAULTS WITHOUT A COMPLAINT")
    for r in sorted(quiet_res, key=lambda r: r["start"]):
        det = ("detected: %s %s after start" % (r["first_order"]["rule"],
                                                hours(r["first_order"]["after_start_ms"]))
               if r["detected"] else "not detected")
        p("  %-28s %-12s start %s end %s; %s" % (r["kind"], r["device"] or r["village"],
                                                 local(r["start"]), local(r["end"]), det))
    p("")
    p("FALSE ORDERS")
    for o in false_orders:
        p("  %s  %-26s %-14s %s" % (local(o["at"]), o["rule"],
                                    o["device"] or ("%s/%s" % (o.get("township"), o.get("village"))),
                                    ("during/after: " + ",".join(o["context"])) if o["context"]
                                    else "no trap nearby"))
    if bad:
        p("")
        p("(%d event lines could not be parsed)" % bad)
    print("\n".join(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"faults": results, "false_orders": false_orders,
                       "true_orders": true_orders, "rules": rules,
                       "suppressed": suppressed}, fh, indent=1, default=str)


if __name__ == "__main__":
    sys.exit(main())
