#!/usr/bin/env bash
# Retention with restic's semantics on a fixed calendar of snapshot times
# (engine run --time): several snapshots a day, from 2020-12-26 to
# 2021-01-05, across ISO week 2020-W53 (Mon 2020-12-28 .. Sun 2021-01-03,
# which straddles the new year) and a month boundary at 23:59:59 / 00:00:00.
# `forget --dry-run --json` must give exactly the expected keep set and
# reasons for keep_daily / keep_weekly (with and without buckets to spare),
# keep_within / keep_last / keep_monthly, and keep_tags (the pipeline's
# tags: field), and remove nothing; `forget` then removes exactly the
# others. `retention: {keep_last: 2, apply: after-run}` makes `engine run`
# forget older snapshots of its own pipeline by itself. Of several runs with
# the same time, keep_last keeps the one made last.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
echo "retention test" >"$src/file.txt"
repo=$T/repo
write_pipeline "$T/base.yml" calendar "$repo" "$src"
# policy NAME YAML: the same pipeline with a retention block
policy() {
  { cat "$T/base.yml"; echo "retention: $2"; } >"$T/$1.yml"
}
# the same pipeline, tagging its snapshots
{ cat "$T/base.yml"; echo "tags: [keepme]"; } >"$T/tag-keep.yml"
{ cat "$T/base.yml"; echo "tags: [other]"; } >"$T/tag-other.yml"

# name time pipeline; ISO weeks: 12-26/27 are 2020-W52, 12-28 .. 01-03 are
# 2020-W53, 01-04/05 are 2021-W01
calendar="
s01 2020-12-26T09:00:00Z base
s02 2020-12-27T23:30:00Z base
s03 2020-12-28T01:00:00Z base
s04 2020-12-28T13:00:00Z tag-keep
s05 2020-12-28T22:59:00Z base
s06 2020-12-30T08:00:00Z base
s07 2020-12-31T23:59:59Z base
s08 2021-01-01T00:00:00Z tag-keep
s09 2021-01-01T12:00:00Z base
s10 2021-01-03T10:00:00Z tag-other
s11 2021-01-03T20:00:00Z base
s12 2021-01-03T23:00:00Z base
s13 2021-01-04T00:30:00Z base
s14 2021-01-04T18:00:00Z base
s15 2021-01-05T06:00:00Z base
s16 2021-01-05T07:00:00Z base
s17 2021-01-05T20:00:00Z base
"
# the runs in a shuffled order: retention must sort by time, not by age
order=$(echo "$calendar" | grep . | awk 'NR % 2 == 0' | tac; echo "$calendar" | grep . | awk 'NR % 2 == 1')
n=0
while read -r name time pl; do
  echo "run $n of $name" >"$src/file.txt"
  run_ok "$T/$name.json" "$T/$name.err" run "$T/$pl.yml" --json --time "$time"
  n=$((n + 1))
done <<<"$order"
assert_eq 17 "$n" "number of calendar runs"

# time -> id, from the repository
run_ok "$T/all.json" "$T/all.err" snapshots "$T/base.yml" --json
assert_eq 17 "$(json_get "$T/all.json" 'len(j)')" "snapshots after the calendar runs"
assert_eq '["keepme"]' "$(json_get "$T/all.json" '[s["tags"] for s in j if s["time"] == "2021-01-01T00:00:00Z"][0]')" \
  "tags of the snapshot taken with tags: [keepme]"
# every run's reported snapshot is listed with its --time
while read -r name time pl; do
  id=$(json_get "$T/$name.json" 'j["snapshot"]')
  assert_eq "$time" "$(json_get "$T/all.json" "[s['time'] for s in j if s['id'] == '$id'][0]")" "time of snapshot $name"
done <<<"$(echo "$calendar" | grep .)"

# check_forget REPORT WHAT EXPECTED: EXPECTED is a Python dict
# {time: [reasons]} of the snapshots to keep; every other snapshot must be
# in "remove". Ids are matched through the times of `snapshots --json`.
check_forget() {
  "$PYTHON" - "$1" "$T/all.json" "$3" <<'EOF' >"$T/forget-check.txt" 2>&1 || { cat "$T/forget-check.txt" >&2; show "$1"; fail "$2: the forget decision differs from restic's semantics"; }
import ast, json, sys
report = json.load(open(sys.argv[1]))
snaps = json.load(open(sys.argv[2]))
expected = ast.literal_eval(sys.argv[3])
by_id = {s["id"]: s["time"] for s in snaps}
problems = []
groups = report["groups"]
if len(groups) != 1:
    problems.append("expected one group (one host, one pipeline), got %d" % len(groups))
keep, remove = {}, []
for g in groups:
    if g["pipeline"] != "calendar":
        problems.append("group of pipeline %r" % g["pipeline"])
    for s in g["keep"]:
        if by_id.get(s["id"]) != s["time"]:
            problems.append("kept id %s does not have time %s" % (s["id"], s["time"]))
        keep[s["time"]] = s["reasons"]
    for s in g["remove"]:
        if by_id.get(s["id"]) != s["time"]:
            problems.append("removed id %s does not have time %s" % (s["id"], s["time"]))
        remove.append(s["time"])
for t in sorted(set(expected) | set(keep)):
    if t not in keep:
        problems.append("%s: removed, expected kept with %s" % (t, expected[t]))
    elif t not in expected:
        problems.append("%s: kept with %s, expected removed" % (t, keep[t]))
    elif keep[t] != expected[t]:
        problems.append("%s: kept with reasons %s, expected %s" % (t, keep[t], expected[t]))
want_remove = sorted(set(by_id.values()) - set(expected))
if sorted(remove) != want_remove:
    problems.append("remove list %s, expected %s" % (sorted(remove), want_remove))
if len(keep) + len(remove) != len(snaps):
    problems.append("%d kept + %d removed != %d snapshots" % (len(keep), len(remove), len(snaps)))
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

dry_forget() { # POLICY-NAME WHAT EXPECTED
  run_ok "$T/f-$1.json" "$T/f-$1.err" forget "$T/$1.yml" --dry-run --json
  assert_eq true "$(json_get "$T/f-$1.json" 'j["dry_run"]')" "$2: dry_run in the report"
  assert_eq 0 "$(json_get "$T/f-$1.json" 'j["removed"]')" "$2: snapshots removed by a dry run"
  check_forget "$T/f-$1.json" "$2" "$3"
}

D="daily snapshot"
W="weekly snapshot"
# Days newest first: 01-05 (s17), 01-04 (s14), 01-03 (s12), 01-01 (s09);
# ISO weeks: 2021-W01 (s17), 2020-W53 (s12, though it is in 2021), 2020-W52
# (s02). Splitting W53 at the new year would keep s07 instead.
policy daily-weekly "{keep_daily: 4, keep_weekly: 3}"
dry_forget daily-weekly "keep_daily 4, keep_weekly 3" "{
  '2021-01-05T20:00:00Z': ['$D', '$W'],
  '2021-01-04T18:00:00Z': ['$D'],
  '2021-01-03T23:00:00Z': ['$D', '$W'],
  '2021-01-01T12:00:00Z': ['$D'],
  '2020-12-27T23:30:00Z': ['$W'],
}"

# Two more days (12-31 ends at 23:59:59, 01-01 starts at 00:00:00) and a
# weekly rule with buckets to spare: it also keeps the oldest snapshot,
# whose week was already counted ("oldest weekly snapshot", restic >= 0.16).
policy spare "{keep_daily: 6, keep_weekly: 5}"
dry_forget spare "keep_daily 6, keep_weekly 5" "{
  '2021-01-05T20:00:00Z': ['$D', '$W'],
  '2021-01-04T18:00:00Z': ['$D'],
  '2021-01-03T23:00:00Z': ['$D', '$W'],
  '2021-01-01T12:00:00Z': ['$D'],
  '2020-12-31T23:59:59Z': ['$D'],
  '2020-12-30T08:00:00Z': ['$D'],
  '2020-12-27T23:30:00Z': ['$W'],
  '2020-12-26T09:00:00Z': ['oldest $W'],
}"

# keep_within 2d of the newest (2021-01-05T20:00): strictly after
# 2021-01-03T20:00, so s11 at exactly 20:00 goes; keep_monthly's December
# snapshot is the one at 23:59:59 on the 31st.
policy within "{keep_within: 2d, keep_last: 1, keep_monthly: 2}"
dry_forget within "keep_within 2d, keep_last 1, keep_monthly 2" "{
  '2021-01-05T20:00:00Z': ['within 2d', 'last snapshot', 'monthly snapshot'],
  '2021-01-05T07:00:00Z': ['within 2d'],
  '2021-01-05T06:00:00Z': ['within 2d'],
  '2021-01-04T18:00:00Z': ['within 2d'],
  '2021-01-04T00:30:00Z': ['within 2d'],
  '2021-01-03T23:00:00Z': ['within 2d'],
  '2020-12-31T23:59:59Z': ['monthly snapshot'],
}"

# hourly buckets: 01-05 20h, 07h, 06h, 01-04 18h
policy hourly "{keep_hourly: 4}"
dry_forget hourly "keep_hourly 4" "{
  '2021-01-05T20:00:00Z': ['hourly snapshot'],
  '2021-01-05T07:00:00Z': ['hourly snapshot'],
  '2021-01-05T06:00:00Z': ['hourly snapshot'],
  '2021-01-04T18:00:00Z': ['hourly snapshot'],
}"

policy tags "{keep_tags: [keepme], keep_last: 2}"
tags_expected="{
  '2021-01-05T20:00:00Z': ['last snapshot'],
  '2021-01-05T07:00:00Z': ['last snapshot'],
  '2021-01-01T00:00:00Z': ['has tags [keepme]'],
  '2020-12-28T13:00:00Z': ['has tags [keepme]'],
}"
dry_forget tags "keep_tags [keepme], keep_last 2" "$tags_expected"

run_ok "$T/still.json" "$T/still.err" snapshots "$T/base.yml" --json
assert_eq 17 "$(json_get "$T/still.json" 'len(j)')" "snapshots after the dry runs"

# the real thing: exactly the kept ones stay
run_ok "$T/forget.json" "$T/forget.err" forget "$T/tags.yml" --json
check_forget "$T/forget.json" "forget keep_tags [keepme], keep_last 2" "$tags_expected"
assert_eq 13 "$(json_get "$T/forget.json" 'j["removed"]')" "snapshots removed by forget"
run_ok "$T/left.json" "$T/left.err" snapshots "$T/base.yml" --json
assert_eq "2020-12-28T13:00:00Z 2021-01-01T00:00:00Z 2021-01-05T07:00:00Z 2021-01-05T20:00:00Z" \
  "$(json_get "$T/left.json" '" ".join(sorted(s["time"] for s in j))')" "snapshots left after forget"
run_engine "$T/check.out" "$T/check.err" check "$T/base.yml" --read-data
assert_rc 0 "check --read-data after forget" "$T/check.out" "$T/check.err"

# ---- retention: {keep_last: 2, apply: after-run} ----------------------------
arepo=$T/arepo
# another pipeline's three snapshots in the same repository: another group,
# with a policy of its own (none here); "auto"'s policy must leave them be
write_pipeline "$T/other.yml" other "$arepo" "$src"
other_ids=()
for day in 1 2 3; do
  run_ok "$T/o.json" "$T/o.err" run "$T/other.yml" --json --time "2020-01-0${day}T00:00:00Z"
  other_ids+=("$(json_get "$T/o.json" 'j["snapshot"]')")
done
other_list=$(printf '%s\n' "${other_ids[@]}" | LC_ALL=C sort | paste -sd ' ')
write_pipeline "$T/auto.yml" auto "$arepo" "$src"
echo "retention: {keep_last: 2, apply: after-run}" >>"$T/auto.yml"
ids=()
for day in 1 2 3 4; do
  echo "auto run $day" >"$src/file.txt"
  if [ "$day" = 3 ]; then
    # the text summary says what retention did
    run_ok "$T/a$day.out" "$T/a$day.err" run "$T/auto.yml" --time "2021-02-0${day}T12:00:00Z"
    assert_contains "$T/a$day.out" "retention removed 1 snapshot(s)" "the summary of run $day with apply: after-run"
    run_ok "$T/as.json" "$T/as.err" snapshots "$T/auto.yml" --json
    ids+=("$(json_get "$T/as.json" '[s["id"] for s in j if s["time"] == "2021-02-03T12:00:00Z"][0]')")
  else
    run_ok "$T/a$day.json" "$T/a$day.err" run "$T/auto.yml" --json --time "2021-02-0${day}T12:00:00Z"
    ids+=("$(json_get "$T/a$day.json" 'j["snapshot"]')")
  fi
  run_ok "$T/as.json" "$T/as.err" snapshots "$T/auto.yml" --json
  want=$((day < 2 ? day : 2))
  assert_eq "$want" "$(json_get "$T/as.json" 'len([s for s in j if s["time"].startswith("2021-02")])')" \
    "snapshots of the auto pipeline after run $day (keep_last 2, apply: after-run)"
  assert_eq "$other_list" "$(json_get "$T/as.json" '" ".join(sorted(s["id"] for s in j if s["time"].startswith("2020")))')" \
    "pipeline 'other''s snapshots after run $day of pipeline 'auto' (keep_last 2, apply: after-run)"
done
assert_eq "$(printf '%s\n' "${ids[2]}" "${ids[3]}" | LC_ALL=C sort | paste -sd ' ')" \
  "$(json_get "$T/as.json" '" ".join(sorted(s["id"] for s in j if s["time"].startswith("2021")))')" "auto's snapshots left after four runs"
run_ok "$T/ar.out" "$T/ar.err" restore "$T/auto.yml" latest --target "$T/out"
assert_files_equal "$src/file.txt" "$(restored_path "$T/out" "$src")/file.txt" "the latest auto snapshot's file"

# ---- several runs with the same time (fast runs land in one second) ---------
# keep_last 1 must keep the run made last (ordered by created_ns, as
# `latest` is), never an older one that happens to have a larger id.
write_pipeline "$T/same.yml" same "$repo" "$src"
echo "retention: {keep_last: 1}" >>"$T/same.yml"
for k in 1 2 3 4 5 6; do
  echo "same-second run $k" >"$src/file.txt"
  run_ok "$T/same$k.json" "$T/same$k.err" run "$T/same.yml" --json --time "2021-03-01T12:00:00Z"
done
last=$(json_get "$T/same6.json" 'j["snapshot"]')
run_ok "$T/same-forget.json" "$T/same-forget.err" forget "$T/same.yml" --json
assert_eq "$last" "$(json_get "$T/same-forget.json" '" ".join(s["id"] for g in j["groups"] for s in g["keep"])')" \
  "the snapshot kept by keep_last 1 among six runs with the same time (the last run's)"
run_ok "$T/same-r.out" "$T/same-r.err" restore "$T/same.yml" latest --target "$T/out-same"
assert_files_equal "$src/file.txt" "$(restored_path "$T/out-same" "$src")/file.txt" "the latest same-time snapshot's file"
note "PASS"
