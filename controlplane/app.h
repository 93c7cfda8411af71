// karl-dp's process: argument handling, start-up order, the control-plane loop on
// the main lcore, and shutdown. Thread: main thread only.
#pragma once

namespace karl {

// Runs karl-dp. argv: `[EAL args] -- [Karl args]`. Returns the process exit code
// (0 ok, 1 any error, 2 usage error).
int RunKarl(int argc, char** argv);

}  // namespace karl
