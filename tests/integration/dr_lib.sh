# shellcheck shell=bash
# The disaster-recovery drills (tests/integration/test_dr_*.sh), sourced
# after lib.sh:
#   drill NAME   runs the `sh` block of docs/DISASTER_RECOVERY.md that begins
#                with `# drill: NAME`, as it is written there (eval in the
#                test's shell: the variables it sets stay set, and `engine`
#                is lib.sh's). Its output goes to $T/drill-NAME.log, shown
#                when the test fails. A command of the block that fails
#                fails the test (set -e).

DR_DOC=$REPO_ROOT/docs/DISASTER_RECOVERY.md
DRILL_LOG=
_DRILL_AT_EXIT=0

_drill_show() {
  [ -n "$DRILL_LOG" ] || return 0
  exec 1>&3 2>&4
  [ "${LIB_EXIT_RC:-0}" = 0 ] || show "$DRILL_LOG"
}

drill() {
  local name=$1 code
  code=$("$PYTHON" - "$DR_DOC" "$name" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
hits = [b for b in blocks if b.startswith("# drill: %s\n" % sys.argv[2])]
if len(hits) != 1:
    sys.exit("docs/DISASTER_RECOVERY.md has %d blocks '# drill: %s'" % (len(hits), sys.argv[2]))
sys.stdout.write(hits[0])
EOF
  ) || fail "no drill '$name' in $DR_DOC"
  note "drill $name (docs/DISASTER_RECOVERY.md)"
  [ "$_DRILL_AT_EXIT" = 1 ] || at_exit _drill_show
  _DRILL_AT_EXIT=1
  DRILL_LOG=$T/drill-$name.log
  exec 3>&1 4>&2 >"$DRILL_LOG" 2>&1
  # in the scratch directory, as an operator in a working directory: the
  # runbook writes files there (check.json)
  local here=$PWD
  cd "$T" || fail "cannot enter $T"
  set -x
  eval "$code"
  { set +x; } 2>/dev/null
  cd "$here" || fail "cannot return to $here"
  exec 1>&3 2>&4
  DRILL_LOG=
}
