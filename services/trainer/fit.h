/* mlops-trainer fit: the offline training command (see fit.c). */
#ifndef MLOPS_TRAINER_FIT_H
#define MLOPS_TRAINER_FIT_H

/** Run `mlops-trainer fit ARGS` (argv[0] is "fit"); returns the exit code. */
int trainer_fit_main(int argc, char **argv);

#endif
