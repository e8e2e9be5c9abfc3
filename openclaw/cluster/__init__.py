"""Several daemons on one Redis: instances, leases with fencing, and the work each lease guards."""
