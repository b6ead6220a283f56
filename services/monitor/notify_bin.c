/* mlops-notify: the Slack notifier as its own binary (= mlops-monitor notify). */
#include "monitor.h"

int main(int argc, char **argv) { return notify_main(argc, argv); }
