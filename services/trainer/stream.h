/* mlops-trainer, the service (see stream.c). */
#ifndef MLOPS_TRAINER_STREAM_H
#define MLOPS_TRAINER_STREAM_H

/** Run the service (argv as the process got it); returns the exit code. */
int trainer_service_main(int argc, char **argv);

#endif
