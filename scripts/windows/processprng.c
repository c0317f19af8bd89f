/* ProcessPrng shim for Wine 8.
 *
 * Rust's standard library (1.78 and later) imports ProcessPrng from bcryptprimitives.dll to
 * get random bytes. Windows 10 and later export it; Wine 8 does not, so every Rust program
 * fails to load there (exit code 53). This DLL exports ProcessPrng implemented with
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. scripts/windows/wine-env
 * builds it with mingw and copies it into the test prefix's system32; it is never shipped
 * and never needed on real Windows.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
