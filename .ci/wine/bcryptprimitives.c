/* A stand-in for Windows' bcryptprimitives.dll in the Wine prefix the Windows tests run in.
 *
 * Rust's std (1.78 and later) and getrandom draw their random bytes from ProcessPrng, which
 * Windows 10 exports from bcryptprimitives.dll. Wine 8 has no such DLL, so without this one
 * every Rust program fails to start under it. This one forwards to BCryptGenRandom, which
 * Wine does have. It is built by .ci/windows-macos.sh with mingw, never shipped. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length; SIZE_T is wider on x86_64. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
