#include "controlplane/app.h"

int main(int argc, char** argv) { return karl::RunKarl(argc, argv); }
