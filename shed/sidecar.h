/* SPDX-License-Identifier: ISC */
/*
 * shed/sidecar: `shed announce`, a heartbeat sidecar for a backend we did not
 * write. It health-checks the backend over HTTP and announces it to the sheds
 * with common/announce while it is healthy (ANNOUNCE_DOWN while it is not).
 */
#ifndef SHED_SIDECAR_H
#define SHED_SIDECAR_H

/* Run the sidecar with the arguments after "shed" (argv[0] is "announce").
 * Returns the process exit code. */
int shed_sidecar_main(int argc, char **argv);

#endif /* SHED_SIDECAR_H */
