/* A stand-in for the SDK header of this name, for type-checking the macOS targets on Linux
 * (.ci/windows-macos.sh): ring's C code includes it on Apple systems to tell macOS from iOS.
 * Only the macros ring reads are defined, with their values on macOS. Never used to build
 * anything shipped: linking for macOS needs Apple's SDK. */
#ifndef TARGET_CONDITIONALS_STAND_IN
#define TARGET_CONDITIONALS_STAND_IN
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#endif
