"""The shipped deployment files (deploy/) pass their own tools' checks: `nginx -t` and
`haproxy -c` (Debian's; `make test` installs them), with paths moved to a temp dir."""

import subprocess

from scripts.drills.common import HAPROXY, NGINX, haproxy_config, nginx_config


def test_nginx_config_is_valid(tmp_path):
    config = nginx_config(tmp_path, [18000, 18001, 18002], 18443, 18080)
    checked = subprocess.run([NGINX, "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_haproxy_config_is_valid(tmp_path):
    config = haproxy_config(tmp_path, [17001, 17002, 17003], [18000, 18001, 18002], 17000, 18443)
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
