/* mlops-monitor's parts: the monitor service and the Slack notifier. */
#ifndef MLOPS_MONITOR_H
#define MLOPS_MONITOR_H

/** `mlops-monitor notify ...` (also installed as mlops-notify). */
int notify_main(int argc, char **argv);

#endif
