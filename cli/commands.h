/* The mlopsctl subcommands (one file each); every one returns an exit code
 * (MLOPS_EXIT_*) and prints errors that name file, record and field. */
#ifndef MLOPS_CLI_COMMANDS_H
#define MLOPS_CLI_COMMANDS_H

int cmd_features(int argc, char **argv);
int cmd_datagen(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_spec(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_alerts(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_models(int argc, char **argv);
/** `mlopsctl models card FILE.json` (model_card.c), reached through cmd_models. */
int model_card_file(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_drift_stat(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_drift(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_offsets(int argc, char **argv);

#endif
