/* OAuth2 for the gcs sink: a service-account JSON key signs a JWT (RS256,
 * RFC 7523 "JWT bearer" grant) that the token endpoint exchanges for an
 * access token. The token is cached per instance, shared by all worker
 * threads, refreshed shortly before it expires and on demand after a 401.
 * Key material and tokens never reach a log line or an error message. */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gcs_int.h"

#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define JWT_LIFETIME_S 3600
#define TOKEN_TIMEOUT_MS 60000
/* Refresh this long before the announced expiry (at most a quarter of the
 * lifetime, so very short-lived tokens are still used). */
#define REFRESH_MARGIN_MS 60000

struct gcs_auth {
  const struct engine_host *host;
  EVP_PKEY *key;
  char *email;
  char *token_uri;
  char *ca_bundle;
  int max_retries;

  pthread_mutex_t mu; /* guards everything below */
  char *token;
  int64_t refresh_at_ms; /* host->now_ms() after which the token is renewed */
  uint64_t generation;   /* bumped for every token fetched */
};

#define AUTH_ERROR(a, ...) (a)->host->set_error((a)->host, __VA_ARGS__)

const char *gcs_auth_email(const struct gcs_auth *a) {
  return a->email;
}

/* PEM keys in service-account files are never encrypted; refusing a
 * passphrase also keeps OpenSSL from prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return 0;
}

/* jansson frees strings without wiping them; the key's copy is wiped first. */
static void wipe_json_string(json_t *s) {
  if (json_is_string(s))
    OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
}

static const char *str_field(json_t *root, const char *name) {
  json_t *v = json_object_get(root, name);
  return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

int gcs_auth_create(const struct engine_host *host, const char *key_json, size_t key_len,
                    const char *token_uri_override, const char *ca_bundle, int max_retries,
                    struct gcs_auth **out) {
  *out = NULL;
  json_error_t jerr;
  json_t *root = json_loadb(key_json, key_len, 0, &jerr);
  if (root == NULL || !json_is_object(root)) {
    /* jerr.text may quote the key file, so only the position is reported */
    if (root == NULL)
      host->set_error(host,
                      "option 'credentials': the service-account key is not valid JSON (error at "
                      "line %d, column %d)",
                      jerr.line, jerr.column);
    else
      host->set_error(host, "option 'credentials': the service-account key is not a JSON object");
    json_decref(root);
    return ENGINE_ERROR;
  }

  int rc = ENGINE_ERROR;
  struct gcs_auth *a = NULL;
  BIO *bio = NULL;
  json_t *pk = json_object_get(root, "private_key");
  const char *type = str_field(root, "type");
  const char *email = str_field(root, "client_email");
  const char *uri = token_uri_override != NULL && token_uri_override[0] != '\0'
                        ? token_uri_override
                        : str_field(root, "token_uri");
  if (uri == NULL)
    uri = DEFAULT_TOKEN_URI;

  if (type != NULL && strcmp(type, "service_account") != 0) {
    host->set_error(host,
                    "option 'credentials': the key file is of type '%s'; only service-account "
                    "keys (type 'service_account') are supported",
                    type);
    goto out;
  }
  if (email == NULL) {
    host->set_error(host, "option 'credentials': the service-account key has no 'client_email'");
    goto out;
  }
  if (!json_is_string(pk) || json_string_length(pk) == 0) {
    host->set_error(
        host, "option 'credentials': the service-account key for '%s' has no 'private_key'", email);
    goto out;
  }
  if (strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0) {
    host->set_error(host, "option 'token_uri': '%s' is not an http:// or https:// URL", uri);
    goto out;
  }

  a = calloc(1, sizeof *a);
  if (a == NULL) {
    host->set_error(host, "out of memory while reading the service-account key");
    goto out;
  }
  a->host = host;
  a->max_retries = max_retries;
  a->email = strdup(email);
  a->token_uri = strdup(uri);
  a->ca_bundle = ca_bundle != NULL ? strdup(ca_bundle) : NULL;
  if (a->email == NULL || a->token_uri == NULL || (ca_bundle != NULL && a->ca_bundle == NULL)) {
    host->set_error(host, "out of memory while reading the service-account key");
    goto out;
  }
  bio = BIO_new_mem_buf(json_string_value(pk), (int)json_string_length(pk));
  if (bio == NULL) {
    host->set_error(host, "out of memory while reading the service-account key");
    goto out;
  }
  a->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
  ERR_clear_error();
  if (a->key == NULL) {
    host->set_error(host,
                    "option 'credentials': the 'private_key' of '%s' is not a PEM private key "
                    "OpenSSL can read",
                    email);
    goto out;
  }
  if (EVP_PKEY_get_base_id(a->key) != EVP_PKEY_RSA) {
    host->set_error(host,
                    "option 'credentials': the 'private_key' of '%s' is not an RSA key (RS256 "
                    "needs one)",
                    email);
    goto out;
  }
  if (pthread_mutex_init(&a->mu, NULL) != 0) {
    host->set_error(host, "unable to initialise a mutex for the OAuth2 token cache");
    goto out;
  }
  *out = a;
  a = NULL;
  rc = ENGINE_OK;
out:
  BIO_free(bio);
  if (a != NULL) {
    EVP_PKEY_free(a->key);
    free(a->email);
    free(a->token_uri);
    free(a->ca_bundle);
    free(a);
  }
  wipe_json_string(pk);
  json_decref(root);
  return rc;
}

void gcs_auth_destroy(struct gcs_auth *a) {
  if (a == NULL)
    return;
  objstore_wipe_free(a->token);
  EVP_PKEY_free(a->key);
  free(a->email);
  free(a->token_uri);
  free(a->ca_bundle);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

/* The signed assertion "header.claims.signature", malloc'd, or NULL with
 * the error set. */
static char *make_jwt(struct gcs_auth *a) {
  char *header = NULL, *claims_json = NULL, *claims = NULL, *input = NULL, *sig64 = NULL;
  char *jwt = NULL;
  unsigned char *sig = NULL;
  EVP_MD_CTX *md = NULL;
  const char *why = "out of memory";

  time_t now = time(NULL);
  static const char hdr[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
  json_t *c =
      json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", a->email, "scope", GCS_SCOPE, "aud",
                a->token_uri, "iat", (json_int_t)now, "exp", (json_int_t)now + JWT_LIFETIME_S);
  if (c == NULL)
    goto out;
  claims_json = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  if (claims_json == NULL)
    goto out;
  header = objstore_base64url(hdr, strlen(hdr));
  claims = objstore_base64url(claims_json, strlen(claims_json));
  if (header == NULL || claims == NULL || asprintf(&input, "%s.%s", header, claims) < 0) {
    input = NULL;
    goto out;
  }

  /* RS256: RSASSA-PKCS1-v1_5 with SHA-256, OpenSSL's default RSA padding. */
  size_t sig_len = 0;
  md = EVP_MD_CTX_new();
  if (md == NULL)
    goto out;
  why = "unable to sign the JWT assertion with the service-account key";
  if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key) != 1 ||
      EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)input, strlen(input)) != 1)
    goto out;
  sig = malloc(sig_len);
  if (sig == NULL) {
    why = "out of memory";
    goto out;
  }
  if (EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)input, strlen(input)) != 1)
    goto out;
  why = "out of memory";
  sig64 = objstore_base64url(sig, sig_len);
  if (sig64 == NULL || asprintf(&jwt, "%s.%s", input, sig64) < 0) {
    jwt = NULL;
    goto out;
  }
  why = NULL;
out:
  if (why != NULL) {
    unsigned long e = ERR_get_error();
    char eb[256] = "";
    if (e != 0)
      ERR_error_string_n(e, eb, sizeof eb);
    ERR_clear_error();
    AUTH_ERROR(a, "unable to build the OAuth2 assertion for '%s': %s%s%s", a->email, why,
               eb[0] ? ": " : "", eb);
  }
  EVP_MD_CTX_free(md);
  free(header);
  free(claims_json);
  free(claims);
  free(input);
  free(sig);
  free(sig64);
  return jwt;
}

/* Called with a->mu held. */
static int fetch_token(struct gcs_auth *a) {
  char *jwt = make_jwt(a);
  if (jwt == NULL)
    return ENGINE_ERROR;
  char *body = NULL;
  if (asprintf(&body,
               "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s",
               jwt) < 0) {
    objstore_wipe_free(jwt);
    AUTH_ERROR(a, "out of memory while requesting an OAuth2 token for '%s'", a->email);
    return ENGINE_ERROR;
  }
  objstore_wipe_free(jwt);

  static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                        "Accept: application/json", NULL};
  struct engine_http_request req = {
      .struct_size = sizeof req,
      .method = "POST",
      .url = a->token_uri,
      .headers = headers,
      .body = body,
      .body_len = strlen(body),
      .ca_bundle = a->ca_bundle,
      .timeout_ms = TOKEN_TIMEOUT_MS,
      .max_retries = a->max_retries,
      .max_body = 1024 * 1024,
  };
  struct engine_http_response resp = {.struct_size = sizeof resp};
  int64_t asked_ms = a->host->now_ms(a->host);
  int hrc = a->host->http_request(a->host, &req, &resp);
  objstore_wipe_free(body);
  if (hrc != ENGINE_OK) {
    AUTH_ERROR(a,
               "unable to obtain an OAuth2 access token for '%s' from %s: no response after %d "
               "attempt(s): %s",
               a->email, a->token_uri, resp.attempts, resp.error[0] ? resp.error : "unknown error");
    a->host->http_response_free(&resp);
    return ENGINE_ERROR;
  }

  int rc = ENGINE_ERROR;
  json_t *root = NULL;
  if (resp.status != 200) {
    char msg[512];
    gcs_error_text(resp.body, resp.body_len, msg, sizeof msg);
    AUTH_ERROR(a, "unable to obtain an OAuth2 access token for '%s' from %s: HTTP %ld%s%s%s",
               a->email, a->token_uri, resp.status, msg[0] ? ": " : "", msg,
               resp.status == 400 || resp.status == 401
                   ? " (check the key is current and the system clock is right)"
                   : "");
    goto out;
  }
  root = json_loadb(resp.body, resp.body_len, 0, NULL);
  json_t *tok = json_object_get(root, "access_token");
  json_t *exp = json_object_get(root, "expires_in");
  if (!json_is_string(tok) || json_string_length(tok) == 0) {
    AUTH_ERROR(a,
               "unable to obtain an OAuth2 access token for '%s' from %s: the answer has no "
               "'access_token'",
               a->email, a->token_uri);
    goto out;
  }
  /* The token ends up in an HTTP header line: refuse anything that could
   * split it. */
  for (const char *p = json_string_value(tok); *p; p++) {
    if ((unsigned char)*p < 0x21 || *p == 0x7f) {
      AUTH_ERROR(a,
                 "unable to obtain an OAuth2 access token for '%s' from %s: the token contains "
                 "control characters or spaces",
                 a->email, a->token_uri);
      goto out;
    }
  }
  int64_t lifetime_s = json_is_integer(exp) ? (int64_t)json_integer_value(exp)
                       : json_is_real(exp)  ? (int64_t)json_real_value(exp)
                                            : JWT_LIFETIME_S;
  if (lifetime_s <= 0) {
    AUTH_ERROR(a,
               "unable to obtain an OAuth2 access token for '%s' from %s: 'expires_in' is %" PRId64,
               a->email, a->token_uri, lifetime_s);
    goto out;
  }
  if (lifetime_s > 86400)
    lifetime_s = 86400;
  char *copy = strdup(json_string_value(tok));
  if (copy == NULL) {
    AUTH_ERROR(a, "out of memory while storing the OAuth2 token for '%s'", a->email);
    goto out;
  }
  int64_t lifetime_ms = lifetime_s * 1000;
  int64_t margin = lifetime_ms / 4 < REFRESH_MARGIN_MS ? lifetime_ms / 4 : REFRESH_MARGIN_MS;
  objstore_wipe_free(a->token);
  a->token = copy;
  /* measured from when the request was sent, so network time only shortens it */
  a->refresh_at_ms = asked_ms + lifetime_ms - margin;
  a->generation++;
  a->host->log(a->host, ENGINE_LOG_DEBUG,
               "obtained an OAuth2 access token for '%s' valid for %" PRId64 " s", a->email,
               lifetime_s);
  rc = ENGINE_OK;
out:
  if (root != NULL) {
    wipe_json_string(json_object_get(root, "access_token"));
    json_decref(root);
  }
  if (resp.body != NULL)
    OPENSSL_cleanse(resp.body, resp.body_len);
  a->host->http_response_free(&resp);
  return rc;
}

int gcs_auth_token(struct gcs_auth *a, char **token, uint64_t *generation) {
  *token = NULL;
  pthread_mutex_lock(&a->mu);
  int rc = ENGINE_OK;
  if (a->token == NULL || a->host->now_ms(a->host) >= a->refresh_at_ms)
    rc = fetch_token(a);
  if (rc == ENGINE_OK) {
    *token = strdup(a->token);
    *generation = a->generation;
    if (*token == NULL) {
      AUTH_ERROR(a, "out of memory while copying the OAuth2 token for '%s'", a->email);
      rc = ENGINE_ERROR;
    }
  }
  pthread_mutex_unlock(&a->mu);
  return rc;
}

void gcs_auth_invalidate(struct gcs_auth *a, uint64_t generation) {
  pthread_mutex_lock(&a->mu);
  if (a->generation == generation && a->token != NULL) {
    objstore_wipe_free(a->token);
    a->token = NULL;
  }
  pthread_mutex_unlock(&a->mu);
}
