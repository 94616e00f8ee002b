"""The local fleet: the whole platform on system-container hosts on one Linux machine."""
