/* Credentials of the s3/minio sinks: the secret options, the AWS_* variables
 * of the environment, or an AWS shared-credentials style file. No message
 * ever contains a credential. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3_int.h"

#define CREDS_FILE_MAX (1024 * 1024)

void s3_creds_free(struct s3_creds *c) {
  objstore_wipe_free(c->access_key);
  objstore_wipe_free(c->secret_key);
  objstore_wipe_free(c->token);
  c->access_key = c->secret_key = c->token = NULL;
}

/* A copy of a host-resolved secret into memory we own, wiping the host's. */
static int take_secret(const struct engine_host *h, const char *option, char **out) {
  char *v = NULL;
  size_t n = 0;
  if (h->secret(h, option, &v, &n) != ENGINE_OK)
    return ENGINE_ERROR; /* message set by the host, names the option only */
  *out = strndup(v, n);
  h->secret_free(v, n);
  if (*out == NULL) {
    h->set_error(h, "out of memory while reading the secret option '%s'", option);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int from_options(const struct engine_host *h, struct s3_creds *c) {
  const char *ak = h->cfg_string(h, "access_key_id"), *sk = h->cfg_string(h, "secret_access_key");
  if (ak == NULL || sk == NULL) {
    h->set_error(h,
                 "options 'access_key_id' and 'secret_access_key' go together: %s is given "
                 "without %s",
                 ak ? "'access_key_id'" : "'secret_access_key'",
                 ak ? "'secret_access_key'" : "'access_key_id'");
    return ENGINE_ERROR;
  }
  if (take_secret(h, "access_key_id", &c->access_key) != ENGINE_OK ||
      take_secret(h, "secret_access_key", &c->secret_key) != ENGINE_OK)
    return ENGINE_ERROR;
  if (h->cfg_string(h, "session_token") != NULL &&
      take_secret(h, "session_token", &c->token) != ENGINE_OK)
    return ENGINE_ERROR;
  return ENGINE_OK;
}

static int from_env(const struct engine_host *h, struct s3_creds *c) {
  const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
  const char *tok = getenv("AWS_SESSION_TOKEN");
  const char *missing = ak == NULL || ak[0] == '\0'   ? "AWS_ACCESS_KEY_ID"
                        : sk == NULL || sk[0] == '\0' ? "AWS_SECRET_ACCESS_KEY"
                                                      : NULL;
  if (missing != NULL) {
    h->set_error(h,
                 "credentials: env: the environment variable %s is not set (set "
                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use 'credentials: "
                 "file:/path' or the options access_key_id/secret_access_key)",
                 missing);
    return ENGINE_ERROR;
  }
  c->access_key = strdup(ak);
  c->secret_key = strdup(sk);
  c->token = tok != NULL && tok[0] != '\0' ? strdup(tok) : NULL;
  if (c->access_key == NULL || c->secret_key == NULL || (tok && tok[0] && c->token == NULL)) {
    h->set_error(h, "out of memory while reading the credentials from the environment");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
  return s;
}

/* "[default]", "[profile x]" (config-file style) and "[x]" all name profile x. */
static int section_is(const char *sec, const char *profile) {
  if (strcmp(sec, profile) == 0)
    return 1;
  if (strncmp(sec, "profile", 7) == 0 && (sec[7] == ' ' || sec[7] == '\t')) {
    const char *p = sec + 8;
    while (*p == ' ' || *p == '\t')
      p++;
    return strcmp(p, profile) == 0;
  }
  return 0;
}

/* Parse the file's text in place. Returns 0, or -1 with why set. */
static int parse_creds(char *text, const char *profile, struct s3_creds *c, int *found_section,
                       char *why, size_t why_len) {
  int in = 0;
  unsigned lineno = 0;
  for (char *line = text; line != NULL;) {
    char *nl = strchr(line, '\n');
    if (nl != NULL)
      *nl = '\0';
    lineno++;
    char *l = trim(line);
    line = nl ? nl + 1 : NULL;
    if (*l == '\0' || *l == '#' || *l == ';')
      continue;
    if (*l == '[') {
      char *end = strchr(l, ']');
      if (end == NULL) {
        snprintf(why, why_len, "line %u: a section header without ']'", lineno);
        return -1;
      }
      *end = '\0';
      in = section_is(trim(l + 1), profile);
      if (in)
        *found_section = 1;
      continue;
    }
    if (!in)
      continue;
    char *eq = strchr(l, '=');
    if (eq == NULL) {
      /* never echo the line: it may hold a secret */
      snprintf(why, why_len, "line %u of section [%s]: expected 'name = value'", lineno, profile);
      return -1;
    }
    *eq = '\0';
    char *name = trim(l), *value = trim(eq + 1);
    char **slot = NULL;
    if (strcasecmp(name, "aws_access_key_id") == 0)
      slot = &c->access_key;
    else if (strcasecmp(name, "aws_secret_access_key") == 0)
      slot = &c->secret_key;
    else if (strcasecmp(name, "aws_session_token") == 0 ||
             strcasecmp(name, "aws_security_token") == 0)
      slot = &c->token;
    if (slot == NULL || *value == '\0')
      continue;
    objstore_wipe_free(*slot);
    *slot = strdup(value);
    if (*slot == NULL) {
      snprintf(why, why_len, "out of memory");
      return -1;
    }
  }
  return 0;
}

static int from_file(const struct engine_host *h, const char *path, struct s3_creds *c) {
  const char *profile = h->cfg_string(h, "profile");
  if (profile == NULL || profile[0] == '\0')
    profile = "default";
  if (path[0] == '\0') {
    h->set_error(h, "credentials: 'file:' needs a path, e.g. file:/root/.aws/credentials");
    return ENGINE_ERROR;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    h->set_error(h, "credentials: unable to open '%s': %s", path, strerror(errno));
    return ENGINE_ERROR;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CREDS_FILE_MAX) {
    int e = errno;
    h->set_error(h, "credentials: '%s' %s", path,
                 !S_ISREG(st.st_mode)          ? "is not a regular file"
                 : st.st_size > CREDS_FILE_MAX ? "is larger than 1 MiB"
                                               : strerror(e));
    close(fd);
    return ENGINE_ERROR;
  }
  if (st.st_mode & 077)
    h->log(h, ENGINE_LOG_WARN,
           "credentials file '%s' is accessible to group or others (mode %04o); use mode 0600",
           path, (unsigned)(st.st_mode & 07777));
  size_t cap = (size_t)st.st_size + 1;
  char *text = malloc(cap);
  if (text == NULL) {
    close(fd);
    h->set_error(h, "out of memory while reading credentials file '%s'", path);
    return ENGINE_ERROR;
  }
  size_t got = 0;
  while (got + 1 < cap) {
    ssize_t n = read(fd, text + got, cap - 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      OPENSSL_cleanse(text, cap);
      free(text);
      close(fd);
      h->set_error(h, "credentials: unable to read '%s': %s", path, strerror(e));
      return ENGINE_ERROR;
    }
    if (n == 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  text[got] = '\0';

  char why[160] = "";
  int found_section = 0;
  int rc = parse_creds(text, profile, c, &found_section, why, sizeof why);
  OPENSSL_cleanse(text, cap);
  free(text);
  if (rc != 0) {
    h->set_error(h, "credentials file '%s': %s", path, why);
    return ENGINE_ERROR;
  }
  if (!found_section) {
    h->set_error(h,
                 "credentials file '%s' has no section [%s] (nor [profile %s]); set 'profile' "
                 "to one of its sections",
                 path, profile, profile);
    return ENGINE_ERROR;
  }
  if (c->access_key == NULL || c->secret_key == NULL) {
    h->set_error(h, "credentials file '%s': section [%s] lacks %s", path, profile,
                 c->access_key == NULL ? "aws_access_key_id" : "aws_secret_access_key");
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

int s3_creds_load(const struct engine_host *h, struct s3_creds *c) {
  memset(c, 0, sizeof *c);
  int rc;
  if (h->cfg_string(h, "access_key_id") != NULL || h->cfg_string(h, "secret_access_key") != NULL) {
    rc = from_options(h, c);
  } else {
    const char *how = h->cfg_string(h, "credentials");
    if (how == NULL || strcmp(how, "env") == 0)
      rc = from_env(h, c);
    else if (strncmp(how, "file:", 5) == 0)
      rc = from_file(h, how + 5, c);
    else {
      /* not echoed: a secret pasted here by mistake must not reach a log */
      h->set_error(h, "option 'credentials' must be 'env' or 'file:/path' (an AWS "
                      "shared-credentials file); the value given is neither");
      rc = ENGINE_ERROR;
    }
  }
  if (rc != ENGINE_OK) {
    s3_creds_free(c);
    return rc;
  }
  /* the key id goes into the Authorization header and the token into a
   * header of its own: a line break there would split the request */
  const char *vals[3] = {c->access_key, c->secret_key, c->token};
  const char *names[3] = {"access key id", "secret access key", "session token"};
  for (int i = 0; i < 3; i++) {
    if (vals[i] == NULL)
      continue;
    for (const char *p = vals[i]; *p != '\0'; p++) {
      if ((unsigned char)*p < 0x20 || *p == 0x7f) {
        h->set_error(h, "credentials: the %s contains a control character", names[i]);
        s3_creds_free(c);
        return ENGINE_ERROR;
      }
    }
  }
  return ENGINE_OK;
}
