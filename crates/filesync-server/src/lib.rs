//! FileSync server: TLS listener, accounts and devices, folder journals and change push.
