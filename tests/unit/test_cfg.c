/* cfg.c: precedence, file errors with file:line, secrets, kafka pass-through,
 * generated help, redacted dump, reload. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "testutil.h"

typedef struct conf {
    char *kafka_brokers;
    char *log_level;
    int64_t batch_size;
    double threshold;
    bool exactly_once;
    char *api_token;
} conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0, "Kafka bootstrap servers"),
    CFG_ITEM(conf_t, log_level, CFG_T_STR, "info", CFG_RELOAD, "log level"),
    CFG_ITEM_RANGE(conf_t, batch_size, CFG_T_INT, "100", CFG_RELOAD, "batch size", 1, 10000),
    CFG_ITEM(conf_t, threshold, CFG_T_DBL, "0.5", 0, "decision threshold"),
    CFG_ITEM(conf_t, exactly_once, CFG_T_BOOL, "false", 0, "use transactions"),
    CFG_ITEM(conf_t, api_token, CFG_T_STR, NULL, CFG_SECRET, "API token"),
};

static conf_t conf;
static cfg_t *cfg;
static char errstr[1024];
static char tmpdir[] = "/tmp/mlops-cfg-XXXXXX";

static void setup(void)
{
    static const char *vars[] = {"MLOPS_KAFKA_BROKERS",  "MLOPS_LOG_LEVEL",
                                 "MLOPS_BATCH_SIZE",     "MLOPS_THRESHOLD",
                                 "MLOPS_EXACTLY_ONCE",   "MLOPS_API_TOKEN",
                                 "MLOPS_API_TOKEN_FILE", "MLOPS_KAFKA_PROP_LINGER_MS"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    cr_assert(mkdtemp(tmpdir));
    cfg = cfg_new("test", NULL, items, sizeof(items) / sizeof(items[0]), &conf, sizeof(conf));
    errstr[0] = '\0';
    log_init("test", LOG_LVL_INFO);
    test_logs_capture();
}

static void teardown(void)
{
    cfg_destroy(cfg);
    char *cmd = xasprintf("rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    test_logs_release();
}

TestSuite(cfg, .init = setup, .fini = teardown);

static char *write_file(const char *name, const char *content)
{
    char *path = xasprintf("%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    cr_assert(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

static cfg_result_t init_args(int argc, const char **argv)
{
    FILE *out = fopen("/dev/null", "w");
    cfg_result_t r = cfg_init(cfg, argc, (char **)argv, out, errstr, sizeof(errstr));
    fclose(out);
    return r;
}

Test(cfg, defaults_apply)
{
    const char *argv[] = {"t"};
    cr_assert_eq(init_args(1, argv), CFG_OK, "%s", errstr);
    cr_assert_str_eq(conf.kafka_brokers, "127.0.0.1:9092");
    cr_assert_eq(conf.batch_size, 100);
    cr_assert_float_eq(conf.threshold, 0.5, 0);
    cr_assert_not(conf.exactly_once);
    cr_assert_null(conf.api_token);
    cr_assert_str_eq(cfg_source(cfg, "batch_size"), "default");
}

Test(cfg, precedence_default_file_env_cli)
{
    char *path = write_file("a.conf", "# comment\n\nbatch_size = 200\nthreshold = 0.7\n"
                                      "log_level = \"debug # not a comment\"\n"
                                      "kafka_brokers = file:9092\n");
    setenv("MLOPS_THRESHOLD", "0.8", 1);
    setenv("MLOPS_KAFKA_BROKERS", "env:9092", 1);
    const char *argv[] = {"t", "--config", path, "--kafka-brokers=cli:9092"};
    cr_assert_eq(init_args(4, argv), CFG_OK, "%s", errstr);
    cr_assert_eq(conf.batch_size, 200, "file beats default");
    cr_assert_float_eq(conf.threshold, 0.8, 0, "env beats file");
    cr_assert_str_eq(conf.kafka_brokers, "cli:9092", "cli beats env");
    cr_assert_str_eq(conf.log_level, "debug # not a comment");
    char want[600];
    snprintf(want, sizeof(want), "%s:3", path);
    cr_assert_str_eq(cfg_source(cfg, "batch_size"), want);
    cr_assert_str_eq(cfg_source(cfg, "threshold"), "env MLOPS_THRESHOLD");
    free(path);
}

Test(cfg, file_errors_name_file_and_line)
{
    char *path = write_file("bad.conf", "batch_size = 5\n\nbatch_sise = 7\n");
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    char want[600];
    snprintf(want, sizeof(want), "%s:3: unknown key 'batch_sise' (did you mean 'batch_size'?)",
             path);
    cr_assert_str_eq(errstr, want);
    free(path);
}

Test(cfg, file_syntax_error)
{
    char *path = write_file("bad.conf", "log_level debug\n");
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, ":1: expected 'key = value'"), "%s", errstr);
    free(path);
}

Test(cfg, type_and_range_errors)
{
    char *path = write_file("t.conf", "batch_size = many\n");
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, ":1: batch_size: 'many' is not an integer"), "%s", errstr);
    free(path);
}

Test(cfg, range_error_from_env)
{
    setenv("MLOPS_BATCH_SIZE", "0", 1);
    const char *argv[] = {"t"};
    cr_assert_eq(init_args(1, argv), CFG_ERROR);
    cr_assert_str_eq(errstr, "env MLOPS_BATCH_SIZE: batch_size: 0 is out of range [1, 10000]");
}

Test(cfg, non_finite_and_bad_bool_refused)
{
    const char *argv[] = {"t", "--threshold", "nan"};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "not a finite number"), "%s", errstr);
}

Test(cfg, bad_bool_refused)
{
    const char *argv[] = {"t", "--exactly-once=perhaps"};
    cr_assert_eq(init_args(2, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "--exactly-once: exactly_once: 'perhaps' is not a boolean"), "%s",
              errstr);
}

Test(cfg, bool_flags)
{
    const char *argv[] = {"t", "--exactly-once"};
    cr_assert_eq(init_args(2, argv), CFG_OK, "%s", errstr);
    cr_assert(conf.exactly_once);
}

Test(cfg, unknown_cli_option_suggests_flag)
{
    const char *argv[] = {"t", "--kafka-broker", "x"};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "did you mean '--kafka-brokers'"), "%s", errstr);
}

Test(cfg, missing_value)
{
    const char *argv[] = {"t", "--batch-size"};
    cr_assert_eq(init_args(2, argv), CFG_ERROR);
    cr_assert_str_eq(errstr, "--batch-size: needs a value");
}

Test(cfg, secret_from_file_env_and_never_printed)
{
    char *secret = write_file("token", "tok-very-secret\n");
    chmod(secret, 0600);
    setenv("MLOPS_API_TOKEN_FILE", secret, 1);
    const char *argv[] = {"t"};
    cr_assert_eq(init_args(1, argv), CFG_OK, "%s", errstr);
    cr_assert_str_eq(conf.api_token, "tok-very-secret", "trailing newline removed");
    /* the dump hides it */
    char *dump = xasprintf("%s/dump", tmpdir);
    FILE *fp = fopen(dump, "w");
    cfg_print(cfg, fp);
    fclose(fp);
    char err[128];
    char *text = file_read_all(dump, 1 << 20, NULL, err, sizeof(err));
    cr_assert(text);
    cr_assert(strstr(text, "api_token = \"***\""), "%s", text);
    cr_assert_null(strstr(text, "very-secret"));
    /* and the logger now redacts it anywhere */
    log_info("leaking tok-very-secret?");
    cr_assert_null(strstr(test_logs(), "very-secret"), "%s", test_logs());
    free(text);
    free(dump);
    free(secret);
}

Test(cfg, secret_file_key_in_config_file)
{
    char *secret = write_file("token2", "from-file-key");
    char *content = xasprintf("api_token_file = %s\n", secret);
    char *path = write_file("s.conf", content);
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_OK, "%s", errstr);
    cr_assert_str_eq(conf.api_token, "from-file-key");
    free(secret);
    free(content);
    free(path);
}

Test(cfg, missing_secret_file_is_a_clear_error)
{
    const char *argv[] = {"t", "--api-token-file", "/nonexistent/tok"};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "--api-token-file: cannot read secret file: /nonexistent/tok"), "%s",
              errstr);
}

Test(cfg, kafka_properties_pass_through_with_precedence)
{
    char *path = write_file("k.conf", "kafka.linger.ms = 10\nkafka.compression.type = lz4\n"
                                      "kafka.socket.timeout.ms = 1000\n");
    setenv("MLOPS_KAFKA_PROP_LINGER_MS", "20", 1);
    const char *argv[] = {"t", "-c", path, "-X", "socket.timeout.ms=2000", "-Xclient.rack=r1"};
    cr_assert_eq(init_args(6, argv), CFG_OK, "%s", errstr);
    size_t n;
    const cfg_kv_t *kv = cfg_kafka_props(cfg, &n);
    cr_assert_eq(n, 4);
    const char *want[][2] = {{"linger.ms", "20"},
                             {"compression.type", "lz4"},
                             {"socket.timeout.ms", "2000"},
                             {"client.rack", "r1"}};
    for (size_t w = 0; w < 4; w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(kv[i].key, want[w][0])) {
                cr_assert_str_eq(kv[i].value, want[w][1], "%s", want[w][0]);
                found = true;
            }
        cr_assert(found, "%s missing", want[w][0]);
    }
    free(path);
}

Test(cfg, secret_kafka_properties_read_from_files)
{
    char *pw = write_file("pw", "from-a-file\n");
    char *tok = write_file("tok", "tok-from-env");
    char *conf_path = write_file("s.conf", "kafka.ssl.key.password_file = /nonexistent/k\n");
    char *line = xasprintf("kafka.sasl.password_file = %s\n", pw);
    char *path = write_file("p.conf", line);
    setenv("MLOPS_KAFKA_PROP_SASL_OAUTHBEARER_CLIENT_SECRET_FILE", tok, 1);
    /* a name without password/secret/token is passed through as it is */
    const char *argv[] = {"t", "-c", path, "-X", "ssl.ca.location_file=x"};
    cr_assert_eq(init_args(5, argv), CFG_OK, "%s", errstr);
    unsetenv("MLOPS_KAFKA_PROP_SASL_OAUTHBEARER_CLIENT_SECRET_FILE");
    size_t n;
    const cfg_kv_t *kv = cfg_kafka_props(cfg, &n);
    const char *want[][2] = {{"sasl.password", "from-a-file"},
                             {"sasl.oauthbearer.client.secret", "tok-from-env"},
                             {"ssl.ca.location_file", "x"}};
    cr_assert_eq(n, 3);
    for (size_t w = 0; w < 3; w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(kv[i].key, want[w][0])) {
                cr_assert_str_eq(kv[i].value, want[w][1], "%s", want[w][0]);
                found = true;
            }
        cr_assert(found, "%s missing", want[w][0]);
    }
    /* a missing file is an error naming where it was asked for */
    cfg_destroy(cfg);
    cfg = cfg_new("test", NULL, items, sizeof(items) / sizeof(items[0]), &conf, sizeof(conf));
    const char *argv2[] = {"t", "-c", conf_path};
    cr_assert_eq(init_args(3, argv2), CFG_ERROR);
    cr_assert(strstr(errstr, "s.conf:1: cannot read secret file: /nonexistent/k"), "%s", errstr);
    free(pw);
    free(tok);
    free(conf_path);
    free(line);
    free(path);
}

Test(cfg, bad_x_option)
{
    const char *argv[] = {"t", "-X", "noequals"};
    cr_assert_eq(init_args(3, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "-X: expected prop=value"), "%s", errstr);
}

Test(cfg, help_is_generated_from_the_table)
{
    const char *argv[] = {"t", "--help"};
    char *path = xasprintf("%s/help", tmpdir);
    FILE *out = fopen(path, "w");
    cr_assert_eq(cfg_init(cfg, 2, (char **)argv, out, errstr, sizeof(errstr)), CFG_EXIT);
    fclose(out);
    char err[128];
    char *text = file_read_all(path, 1 << 20, NULL, err, sizeof(err));
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", items[i].key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        cr_assert(strstr(text, flag), "help lacks %s", flag);
        cr_assert(strstr(text, items[i].help), "help lacks the text of %s", items[i].key);
    }
    cr_assert(strstr(text, "env MLOPS_BATCH_SIZE"));
    cr_assert(strstr(text, "[range: 1..10000]"));
    cr_assert(strstr(text, "MLOPS_API_TOKEN_FILE"));
    free(text);
    free(path);
}

Test(cfg, positional_arguments_refused_unless_allowed)
{
    const char *argv[] = {"t", "extra"};
    cr_assert_eq(init_args(2, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "unexpected argument 'extra'"), "%s", errstr);
}

Test(cfg, positional_arguments_when_allowed)
{
    cfg_allow_positional(cfg, true);
    const char *argv[] = {"t", "a", "--batch-size=3", "b", "--", "--c"};
    cr_assert_eq(init_args(6, argv), CFG_OK, "%s", errstr);
    int n;
    char **pos = cfg_positional(cfg, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(pos[0], "a");
    cr_assert_str_eq(pos[1], "b");
    cr_assert_str_eq(pos[2], "--c");
    cr_assert_eq(conf.batch_size, 3);
}

Test(cfg, reload_applies_reloadable_keys_only)
{
    char *path = write_file("r.conf", "batch_size = 10\nthreshold = 0.1\n");
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_OK, "%s", errstr);
    free(write_file("r.conf", "batch_size = 20\nthreshold = 0.9\nlog_level = warn\n"));
    int n = cfg_reload(cfg, errstr, sizeof(errstr));
    cr_assert_eq(n, 2, "batch_size and log_level are reloadable: %s", errstr);
    cr_assert_eq(conf.batch_size, 20);
    cr_assert_str_eq(conf.log_level, "warn");
    cr_assert_float_eq(conf.threshold, 0.1, 0, "threshold keeps its running value");
    cr_assert(strstr(test_logs(), "threshold changed but is not reloadable"), "%s", test_logs());
    free(path);
}

Test(cfg, reload_with_a_broken_file_keeps_running_config)
{
    char *path = write_file("r.conf", "batch_size = 10\n");
    const char *argv[] = {"t", "-c", path};
    cr_assert_eq(init_args(3, argv), CFG_OK, "%s", errstr);
    free(write_file("r.conf", "batch_size = lots\n"));
    cr_assert_eq(cfg_reload(cfg, errstr, sizeof(errstr)), -1);
    cr_assert(strstr(errstr, "'lots' is not an integer"), "%s", errstr);
    cr_assert_eq(conf.batch_size, 10);
    free(path);
}

Test(cfg, missing_config_file)
{
    const char *argv[] = {"t", "--config=/nonexistent.conf"};
    cr_assert_eq(init_args(2, argv), CFG_ERROR);
    cr_assert(strstr(errstr, "/nonexistent.conf: No such file"), "%s", errstr);
}

typedef struct req_conf {
    char *spec;
    int64_t batch_size;
} req_conf_t;

Test(cfg, required_key_refused_at_run_shown_by_print_config)
{
    static const cfg_item_t req_items[] = {
        CFG_ITEM(req_conf_t, spec, CFG_T_STR, NULL, CFG_REQUIRED, "feature spec file"),
        CFG_ITEM(req_conf_t, batch_size, CFG_T_INT, "7", 0, "batch size"),
    };
    unsetenv("MLOPS_SPEC");
    req_conf_t rc = {0};
    cfg_t *rcfg = cfg_new("req", NULL, req_items, 2, &rc, sizeof(rc));
    const char *run[] = {"t"};
    cr_assert_eq(cfg_init(rcfg, 1, (char **)run, stdout, errstr, sizeof(errstr)), CFG_ERROR);
    cr_assert(strstr(errstr, "spec must be set (--spec, env MLOPS_SPEC"), "%s", errstr);

    char *path = xasprintf("%s/print", tmpdir);
    FILE *out = fopen(path, "w");
    cr_assert(out);
    const char *print[] = {"t", "--print-config"};
    cr_assert_eq(cfg_init(rcfg, 2, (char **)print, out, errstr, sizeof(errstr)), CFG_EXIT, "%s",
                 errstr);
    fclose(out);
    char err[256];
    char *text = file_read_all(path, 1 << 20, NULL, err, sizeof(err));
    cr_assert(text, "%s", err);
    cr_assert(strstr(text, "spec = \"\"  # default; required, not set\n"), "%s", text);
    cr_assert(strstr(text, "batch_size = 7  # default\n"), "%s", text);
    free(text);
    free(path);
    cfg_destroy(rcfg);
    free(rc.spec);
}
