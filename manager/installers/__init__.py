"""Package installers (uv, pip) behind one interface; ``detect.detect_installer`` picks one."""
