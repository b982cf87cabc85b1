/* The command table: every command, every option and which commands take
 * it, declared once. cli/args.c parses argv against it and prints
 * `engine help` from it; docs/CLI.md's synopsis is `engine help --markdown`
 * (tests/unit/test_cli.c fails when the two differ). Help texts are plain
 * sentences: the printer wraps them. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/schema.h"
#include "util/encoding.h"

/* ---- value checks ---------------------------------------------------------- */

static const char *check_progress(const char *v, struct cli_args *a) {
  (void)a;
  return strcmp(v, "auto") == 0 || strcmp(v, "always") == 0 || strcmp(v, "never") == 0
             ? NULL
             : "expected auto, always or never";
}

static const char *check_time(const char *v, struct cli_args *a) {
  return parse_iso_time(v, &a->time_s) == 0
             ? NULL
             : "expected an ISO 8601 time such as 2026-01-31T03:00:00Z";
}

static const char *check_lock_wait(const char *v, struct cli_args *a) {
  return config_parse_duration(v, &a->lock_wait_ms) == 0
             ? NULL
             : "expected a duration such as 30s, 5m or 1h";
}

static const char *check_clock(const char *v, struct cli_args *a) {
  int h, m;
  char end;
  if (sscanf(v, "%d:%d%c", &h, &m, &end) != 2 || h < 0 || h > 23 || m < 0 || m > 59 ||
      strlen(v) != 5)
    return "expected a time of day HH:MM such as 08:00";
  a->summary_minute = h * 60 + m;
  return NULL;
}

static const char *check_fraction(const char *v, struct cli_args *a) {
  char *end;
  double f = strtod(v, &end);
  if (end == v || *end || !(f >= 0 && f <= 1))
    return "expected a fraction between 0 and 1";
  a->repack_fraction = f;
  return NULL;
}

/* ---- options ------------------------------------------------------------------ */

#define FLAG(f) CLI_FLAG, NULL, offsetof(struct cli_args, f), 0, NULL
#define VALUE(v, f, chk) CLI_VALUE, v, offsetof(struct cli_args, f), 0, chk
#define LIST(v, f, n) CLI_LIST, v, offsetof(struct cli_args, f), offsetof(struct cli_args, n), NULL

const struct cli_option cli_options[OPT__COUNT] = {
    [OPT_JSON] = {"json", 0, FLAG(json)},
    [OPT_DRY_RUN] = {"dry-run", 0, FLAG(dry_run)},
    [OPT_PROGRESS] = {"progress", 0, VALUE("auto|always|never", progress, check_progress)},
    [OPT_TIME] = {"time", 0, VALUE("ISO8601", time, check_time)},
    [OPT_LOCK_WAIT] = {"lock-wait", 0, VALUE("D", lock_wait, check_lock_wait)},
    [OPT_ONLY] = {"only", 0, LIST("SOURCE[/ITEM-GLOB]", only, n_only)},
    [OPT_TARGET] = {"target", 0, VALUE("T", target, NULL)},
    [OPT_YES] = {"yes", 'y', FLAG(yes)},
    [OPT_AS] = {"as", 0, VALUE("NAME", as_name, NULL)},
    [OPT_DROP_EXISTING] = {"drop-existing", 0, FLAG(drop_existing)},
    [OPT_TO_STDOUT] = {"to-stdout", 0, FLAG(to_stdout)},
    [OPT_NAMESPACE_MAP] = {"namespace-map", 0, LIST("OLD=NEW", namespace_map, n_namespace_map)},
    [OPT_READ_DATA] = {"read-data", 0, FLAG(read_data)},
    [OPT_RESTORE_TEST] = {"restore-test", 0, FLAG(restore_test)},
    [OPT_PRUNE] = {"prune", 0, FLAG(prune)},
    [OPT_REPACK_THRESHOLD] = {"repack-threshold", 0, VALUE("F", repack_threshold, check_fraction)},
    [OPT_FORGET_UNREADABLE] = {"forget-unreadable", 0,
                               LIST("ID", forget_unreadable, n_forget_unreadable)},
    [OPT_NEW_PASSPHRASE] = {"new-passphrase", 0, VALUE("env:NAME|file:PATH", new_passphrase, NULL)},
    [OPT_NEW_KEY_FILE] = {"new-key-file", 0, VALUE("PATH", new_key_file, NULL)},
    [OPT_FROM] = {"from", 0, VALUE("SINK", from, NULL)},
    [OPT_TO] = {"to", 0, VALUE("SINK", to, NULL)},
    [OPT_INSTALL] = {"install", 0, FLAG(install)},
    [OPT_UNIT_DIR] = {"unit-dir", 0, VALUE("DIR", unit_dir, NULL)},
    [OPT_LISTEN] = {"listen", 0, VALUE("ADDR:PORT", listen, NULL)},
    [OPT_CONFIG_DIR] = {"config-dir", 0, VALUE("DIR", config_dir, NULL)},
    [OPT_TOKEN_FILE] = {"token-file", 0, VALUE("PATH", token_file, NULL)},
    [OPT_MESSAGE] = {"message", 0, VALUE("TEXT", message, NULL)},
    [OPT_ENV_FILE] = {"env-file", 0, VALUE("PATH", env_file, NULL)},
    [OPT_METRICS_FILE] = {"metrics-file", 0, VALUE("PATH", metrics_file, NULL)},
    [OPT_ALLOW_UNTESTED] = {"allow-untested", 0, FLAG(allow_untested)},
    [OPT_CONTAINS] = {"contains", 0, VALUE("SOURCE/ITEM-GLOB", contains, NULL)},
    [OPT_STATE_DIR] = {"state-dir", 0, VALUE("DIR", state_dir, NULL)},
    [OPT_ALLOW_RESTORE] = {"allow-restore", 0, FLAG(allow_restore)},
    [OPT_RESTORE_TOKEN_FILE] = {"restore-token-file", 0, VALUE("PATH", restore_token_file, NULL)},
    [OPT_DAILY_SUMMARY] = {"daily-summary", 0, VALUE("HH:MM", daily_summary, check_clock)},
    [OPT_WRITE_ONLY] = {"write-only", 0, FLAG(write_only)},
    [OPT_OUT] = {"out", 0, VALUE("FILE", out, NULL)},
    [OPT_TENANT] = {"tenant", 0, VALUE("NAME", tenant, NULL)},
    [OPT_REWRITE] = {"rewrite", 0, FLAG(rewrite)},
};

/* ---- commands --------------------------------------------------------------- */

/* How a command takes an option: USE (plain), ONLY_FOR (some actions),
 * NEEDS (only with another option), REQUIRED. */
#define USE(o, h)                                                                                  \
  { .opt = (o), .help = (h) }
#define ONLY_FOR(o, h, acts)                                                                       \
  { .opt = (o), .help = (h), .actions = (acts) }
#define NEEDS(o, h, other)                                                                         \
  { .opt = (o), .help = (h), .needs = (other) }
#define REQUIRED(o, h)                                                                             \
  { .opt = (o), .help = (h), .flags = CLI_REQUIRED }
#define END                                                                                        \
  { .opt = OPT_NONE }

#define LOCK_WAIT_HELP "wait up to D (e.g. 10m) for other processes' locks instead of failing"

static const struct cli_use run_opts[] = {
    USE(OPT_DRY_RUN, "read and chunk everything, count what would be new, store nothing"),
    USE(OPT_JSON, "print the summary as JSON (docs/CLI.md)"),
    USE(OPT_PROGRESS, "progress line on stderr: auto (when stderr is a terminal), always, never"),
    USE(OPT_TIME,
        "record this time (ISO 8601) as the snapshot time instead of now (imports, tests)"),
    USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP
        "; also bounds the wait for another run of the same pipeline on this host, which is "
        "otherwise waited for as long as it takes"),
    USE(OPT_ONLY,
        "back up only source SOURCE, and within it only the items matching ITEM-GLOB (with what is "
        "below and above them), into a snapshot of its own that records the selection; "
        "repeatable. Such a snapshot is never a parent and does not count for the recovery-point "
        "objective"),
    USE(OPT_METRICS_FILE,
        "write the pipeline's Prometheus series (last run, newest snapshot, last success, "
        "objectives, last verification) to PATH atomically, for node_exporter's textfile "
        "collector; also when the run fails"),
    END};

static const struct cli_use json_opts[] = {USE(OPT_JSON, "print JSON (docs/CLI.md)"), END};

static const struct cli_use restore_opts[] = {
    {.opt = OPT_ONLY,
     .help = "only source SOURCE, and within it the items matching ITEM-GLOB (and what is below "
             "them)",
     .flags = CLI_ONCE},
    USE(OPT_TARGET, "where to restore (a directory for the files source)"),
    USE(OPT_DRY_RUN, "list what would be restored, write nothing (a source that can, such as "
                     "k8s-yaml, checks it against the target: a server-side dry run)"),
    USE(OPT_YES, "confirm overwriting existing data (a terminal is asked [y/N] instead)"),
    USE(OPT_AS, "restore one item under another name (database sources: another schema name)"),
    USE(OPT_DROP_EXISTING,
        "replace existing objects (database sources; asks [y/N] or needs --yes)"),
    USE(OPT_TO_STDOUT, "write the selected item's raw stream to stdout (e.g. a pg_dump archive)"),
    USE(OPT_NAMESPACE_MAP, "restore namespace OLD's objects into namespace NEW (k8s-yaml; "
                           "repeatable)"),
    USE(OPT_PROGRESS, "progress line on stderr: auto (when stdin and stderr are a terminal), "
                      "always, never"),
    NEEDS(OPT_JSON, "list what would be restored as JSON, one object per line", OPT_DRY_RUN),
    USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP),
    END};

static const struct cli_use snapshots_opts[] = {
    USE(OPT_JSON, "print JSON (docs/CLI.md)"),
    USE(OPT_CONTAINS, "only the snapshots holding an item of source SOURCE that matches ITEM-GLOB "
                      "(reads that source's item tree of every snapshot)"),
    USE(OPT_TENANT, "only the snapshots holding items of tenant NAME (per_tenant pipelines; "
                    "from the manifests, without reading any tree)"),
    END};

static const struct cli_use check_opts[] = {
    USE(OPT_READ_DATA, "also download every pack, verify its hash, decrypt and verify every blob, "
                       "and name the snapshots and items affected by any damage"),
    USE(OPT_RESTORE_TEST,
        "restore the pipeline's newest snapshot of every source that supports it into a scratch "
        "location, verify it (files: every file's content and metadata against the snapshot; "
        "database sources: their sanity checks), measure how long the restore took, clean up. "
        "Fails when no source of the snapshot can be restore-tested"),
    NEEDS(OPT_ALLOW_UNTESTED,
          "with --restore-test: succeed (result 'untested') when no source can be "
          "restore-tested, instead of failing",
          OPT_RESTORE_TEST),
    USE(OPT_JSON, "print the report as JSON (docs/CLI.md)"),
    USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP),
    END};

static const struct cli_use forget_opts[] = {
    USE(OPT_PRUNE, "then remove the data no snapshot references (see prune)"),
    USE(OPT_DRY_RUN, "print the decision, remove nothing"),
    USE(OPT_JSON, "print the report as JSON (docs/CLI.md)"),
    USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP),
    NEEDS(OPT_REPACK_THRESHOLD,
          "with --prune: repack packs whose unused share exceeds F (default 0.5)", OPT_PRUNE),
    USE(OPT_FORGET_UNREADABLE,
        "drop snapshot ID, which exists but cannot be read (see check); without it forget refuses "
        "to run while any snapshot is unreadable. Repeatable, or several ids separated by commas"),
    END};

static const struct cli_use prune_opts[] = {
    USE(OPT_DRY_RUN, "say what would be deleted and repacked, change nothing"),
    USE(OPT_REPACK_THRESHOLD, "repack packs whose unused share exceeds F (default 0.5)"),
    USE(OPT_JSON, "print the report as JSON (docs/CLI.md)"),
    USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP),
    USE(OPT_FORGET_UNREADABLE, "drop snapshot ID, which exists but cannot be read (see check), "
                               "instead of refusing to run. Repeatable, or several ids separated "
                               "by commas"),
    END};

static const struct cli_action repair_actions[] = {
    {"index", "PIPELINE", 1, 1,
     "rebuild the index from the packs' own headers: index objects that cannot be read are "
     "replaced, packs no index lists are indexed again, entries of lost packs are dropped "
     "(entries of packs whose header is damaged are kept)"},
    {"snapshots", "PIPELINE [SNAPSHOT]...", 1, CLI_MANY,
     "for each snapshot (or the ones named) whose data is partly lost, write a new snapshot "
     "holding what survives, tagged 'repaired', with the lost items listed in its manifest; the "
     "damaged original stays until you forget it"},
    {.name = NULL}};

static const struct cli_use repair_opts[] = {
    ONLY_FOR(OPT_READ_DATA,
             "also decode every blob the snapshots use (finds damaged data, not only missing data)",
             "snapshots"),
    USE(OPT_DRY_RUN, "say what would be done, write nothing"),
    USE(OPT_JSON, "print the report as JSON (docs/CLI.md)"), USE(OPT_LOCK_WAIT, LOCK_WAIT_HELP),
    END};

static const struct cli_use sync_opts[] = {
    REQUIRED(OPT_FROM, "the sink to copy from (its name in the pipeline)"),
    REQUIRED(OPT_TO, "the sink to copy to"), END};

static const struct cli_action key_actions[] = {
    {"add", "PIPELINE", 1, 1,
     "add a key for a new passphrase (from --new-passphrase, --new-key-file, or asked twice on "
     "the terminal)"},
    {"list", "PIPELINE", 1, 1,
     "list the keys (id, created, user, host; * marks the key used to open)"},
    {"remove", "PIPELINE KEY-ID", 2, 2,
     "remove KEY-ID (refuses the last key and the key used to open the repository)"},
    {"passwd", "PIPELINE", 1, 1,
     "add a key for the new passphrase and remove the one used to open the repository; update "
     "the pipeline's stages.encrypt reference afterwards"},
    {"rotate", "PIPELINE", 1, 1,
     "format 2: make a new key pair that everything written from now on is sealed to; the old "
     "ones stay in the keyring for reading (seconds, whatever the repository's size). Writer "
     "credentials made before keep sealing to the old public key until made again"},
    {"shred", "PIPELINE", 1, 1,
     "format 2, per_tenant: destroy every key of tenant --tenant NAME in every keyring object, "
     "so that no one can decrypt its data in any snapshot again (irreversible; asks for the "
     "tenant's name on a terminal, or give --yes); 'engine prune' then removes its packs"},
    {.name = NULL}};

static const struct cli_use key_opts[] = {
    ONLY_FOR(OPT_NEW_PASSPHRASE, "the new passphrase, from an environment variable or a file",
             "add passwd"),
    ONLY_FOR(OPT_NEW_KEY_FILE,
             "the new key file; created (mode 0600) with a random key if it does not exist",
             "add passwd"),
    ONLY_FOR(OPT_WRITE_ONLY,
             "format 2: instead of a key for a passphrase, write a writer credential (the public "
             "key, the chunk-id key and the index key, never the private key) for a backup host "
             "that may add snapshots but read none; needs --out",
             "add"),
    {.opt = OPT_OUT,
     .help = "where --write-only writes the credential (created with mode 0600, never "
             "overwritten); use it as stages.encrypt.key_file with mode: write-only",
     .actions = "add",
     .needs = OPT_WRITE_ONLY},
    ONLY_FOR(OPT_JSON, "print the list as JSON (docs/CLI.md)", "list"),
    ONLY_FOR(OPT_REWRITE,
             "after a compromise: also seal every pack, index object, snapshot and record again "
             "under new keys (a new master secret, key pair, index key and tenant keys) and "
             "retire the old ones, so that no old key, passphrase or key file opens anything; "
             "the passphrase that opened the repository opens it afterwards, the other "
             "passphrases' keys are removed, writer credentials must be made again, snapshot "
             "ids change. Also removes data no snapshot references (as prune). Resumable: run "
             "it again after an interruption",
             "rotate"),
    ONLY_FOR(OPT_TENANT, "the tenant to shred (required)", "shred"),
    ONLY_FOR(OPT_YES, "shred without asking", "shred"),
    ONLY_FOR(OPT_LOCK_WAIT, LOCK_WAIT_HELP, "rotate shred"),
    END};

static const struct cli_use schedule_opts[] = {
    USE(OPT_INSTALL, "write the units instead of printing them, and the environment file"),
    NEEDS(OPT_UNIT_DIR, "where --install writes them (default /etc/systemd/system)", OPT_INSTALL),
    USE(OPT_ENV_FILE,
        "the environment file (mode 0600) the service loads the pipeline's env: secrets from "
        "(default /etc/engine/NAME.env); --install writes it from the current environment "
        "unless it exists"),
    USE(OPT_METRICS_FILE,
        "the service runs 'engine run --metrics-file PATH' (an absolute path, e.g. in "
        "node_exporter's textfile directory) and may write PATH's directory"),
    END};

static const struct cli_use notify_opts[] = {
    USE(OPT_MESSAGE, "a text for the body's 'message' field"), END};

static const struct cli_use serve_opts[] = {
    USE(OPT_LISTEN, "address to listen on (default 127.0.0.1:5036; port 0 picks one)"),
    USE(OPT_CONFIG_DIR, "the pipelines (default conf.d)"),
    USE(OPT_TOKEN_FILE, "require 'Authorization: Bearer TOKEN' with the token in PATH (mode "
                        "0600); needed to listen on anything but a loopback address"),
    USE(OPT_STATE_DIR, "where the job history, paused schedules and the recovery-point watch "
                       "are kept (default: serve-HASH of the config directory in the state "
                       "directory: $ENGINE_STATE_DIR, $STATE_DIRECTORY, $XDG_STATE_HOME/engine or "
                       "~/.local/state/engine)"),
    USE(OPT_DAILY_SUMMARY, "when the daily_summary notification is sent, in local time (default "
                           "00:00)"),
    USE(OPT_ALLOW_RESTORE, "enable POST /v1/pipelines/NAME/restore (off by default: docs/SERVE.md "
                           "says why); needs --restore-token-file"),
    NEEDS(OPT_RESTORE_TOKEN_FILE,
          "the token restore requests must carry (Authorization: Bearer TOKEN), separate from "
          "--token-file's",
          OPT_ALLOW_RESTORE),
    END};

const struct cli_command cli_commands[] = {
    {"run", "PIPELINE", 1, 1, NULL, run_opts,
     "Back up every source of the pipeline into a new snapshot on every sink. The first run on an "
     "empty sink location initialises the repository; a location holding anything else is "
     "refused.",
     "Exit status: 0 complete, 3 partial (some items failed or vanished; see warnings), 1 error, "
     "130 interrupted (no snapshot written).",
     cmd_run},
    {"validate", "PIPELINE", 1, 1, NULL, json_opts,
     "Check a pipeline file without running it: structure, types, plugin names and every plugin "
     "option against the plugin's schema. Errors name file:line:column and the option.",
     NULL, cmd_validate},
    {"snapshots", "PIPELINE", 1, 1, NULL, snapshots_opts,
     "List the recovery points in the pipeline's repository, oldest first.",
     "Exit status: 0, or 1 when a snapshot exists but cannot be read.", cmd_snapshots},
    {"show", "PIPELINE SNAPSHOT|latest", 2, 2, NULL, json_opts,
     "Print one snapshot manifest: times, host, status, per-source items, marks and warnings.",
     NULL, cmd_show},
    {"restore", "PIPELINE SNAPSHOT|latest", 2, 2, NULL, restore_opts,
     "Restore a snapshot. Without --target, sources restore to their original location. Item "
     "names in the snapshot are checked first; a manifest with '..' or absolute names is "
     "refused.",
     "Exit status: 0 restored, 3 some items failed (the target is incomplete and says so), 1 "
     "error.",
     cmd_restore},
    {"check", "PIPELINE", 1, 1, NULL, check_opts,
     "Verify the repository: every snapshot's trees and chunks are indexed and their packs "
     "exist.",
     "Exit status: 0 sound, 1 problems found or the check could not run.", cmd_check},
    {"forget", "PIPELINE [SNAPSHOT]...", 1, CLI_MANY, NULL, forget_opts,
     "With SNAPSHOT ids (or prefixes of at least 8 hex digits): remove those snapshots. Without: "
     "apply the pipeline's retention policy (retention: keep_last, keep_hourly, keep_daily, "
     "keep_weekly, keep_monthly, keep_yearly, keep_within, keep_tags; restic's semantics, UTC "
     "calendar) to each group of snapshots from the same host and pipeline. Prints which "
     "snapshots are kept and why, and which are removed. Takes the exclusive lock.",
     NULL, cmd_forget},
    {"prune", "PIPELINE", 1, 1, NULL, prune_opts,
     "Remove data no snapshot references: deletes packs without used blobs (including packs left "
     "by killed backups) and repacks packs whose unused share exceeds the threshold, then "
     "rewrites the index. Takes the exclusive lock, so it waits for (or refuses during) backups. "
     "A killed prune leaves a repository that passes check; run it again. It refuses to delete "
     "anything while a snapshot or an index object cannot be read (name lost snapshots with "
     "--forget-unreadable; rebuild a damaged index with 'engine repair index').",
     NULL, cmd_prune},
    {"repair", NULL, 0, 0, repair_actions, repair_opts,
     "Repair a damaged repository under the exclusive lock; a killed repair leaves it as it was "
     "or repaired, never worse.",
     "Exit status: 0 nothing to repair or repaired, 3 repaired but data was lost, 1 error.",
     cmd_repair},
    {"key", NULL, 0, 0, key_actions, key_opts,
     "Manage the keys that open the repository; the data is never rewritten.",
     "The repository is opened with the pipeline's stages.encrypt passphrase or key file.",
     cmd_key},
    {"sync", "PIPELINE", 1, 1, NULL, sync_opts,
     "Copy the objects the --from sink has and the --to sink lacks (after an outage of a sink "
     "with required: false, or to seed a sink newly added to the pipeline), in an order that "
     "keeps the target consistent: keys and config, packs, index, snapshots. Nothing is "
     "overwritten or deleted.",
     NULL, cmd_sync},
    {"schedule", "PIPELINE", 1, 1, NULL, schedule_opts,
     "Print a systemd .service and .timer that run the pipeline on its 'schedule:' (a cron "
     "expression, translated to OnCalendar=; Persistent=true catches up after downtime), named "
     "engine-NAME.service and engine-NAME.timer, and engine-NAME-failure.service, the "
     "service's OnFailure= unit, when a webhook of the pipeline is called for 'failure'. The "
     "service is sandboxed (a read-only system but for the local repositories, no privilege "
     "beyond reading every file; docs/CLI.md) and reads the pipeline's env: secrets from an "
     "environment file, never from the unit.",
     NULL, cmd_schedule},
    {"serve", "", 0, 0, NULL, serve_opts,
     "Serve the HTTP API (docs/SERVE.md) and run the pipelines of the config directory (every "
     "*.yml / *.yaml) on their cron 'schedule:'. Backups run as child processes, at most one per "
     "pipeline and two at once. SIGHUP reloads the directory; SIGTERM/SIGINT stop accepting "
     "requests and wait up to 60 s for running backups.",
     NULL, cmd_serve},
    {"status", "PIPELINE...", 1, CLI_MANY, NULL, json_opts,
     "Show each pipeline's status from its repository: the newest complete snapshot and its age "
     "against the recovery-point objective (objectives.rpo), the last run's outcome and error, "
     "the last verification (check, read-data or restore test) with its result and the measured "
     "restore time against the recovery-time objective (objectives.rto).",
     "Exit status: 0 every pipeline meets its objectives and its last verification passed, 4 "
     "some pipeline does not (stale, no recovery point yet, failed verification, restore slower "
     "than the RTO), 1 a repository could not be read.",
     cmd_status},
    {"audit", "PIPELINE", 1, 1, NULL, json_opts,
     "List the audit trail of the pipeline's repository, oldest first: one record per run, "
     "restore, forget, prune, key change, repair and check (time, host, user, command, pipeline, "
     "snapshot, outcome, error), with the records of this host's local audit log that never "
     "reached the repository (docs/CLI.md).",
     "Exit status: 0, or 1 when the repository cannot be read (the local records are listed) or "
     "a record in it cannot be read.",
     cmd_audit},
    {"notify", "PIPELINE EVENT", 2, 2, NULL, notify_opts,
     "Call the pipeline's webhooks whose 'on:' names EVENT now, with the documented body "
     "(docs/CONFIG.md, notify) and 'manual': true: to test a webhook, and what the systemd "
     "OnFailure= unit of 'engine schedule' runs (it sends nothing when the failed run reported "
     "itself).",
     "Exit status: 0 every such webhook accepted it, 1 otherwise (or none is called for EVENT).",
     cmd_notify},
    {"plugins", "", 0, 0, NULL, json_opts,
     "List the plugins found on the search path (--plugin-dir, $ENGINE_PLUGIN_PATH, the build "
     "tree, the install prefix) with their versions, options, and why any was refused.",
     NULL, cmd_plugins},
    {.name = NULL}};

const struct cli_command *cli_find_command(const char *name) {
  for (const struct cli_command *c = cli_commands; c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}
