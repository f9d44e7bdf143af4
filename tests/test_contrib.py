"""The deployment files in contrib/: nginx accepts its config, systemd's unit is whole."""
import configparser
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx or openssl is not installed here")
def test_nginx_config_passes_nginx_t(tmp_path):
    """contrib/nginx/rulecast.conf, included in a minimal nginx.conf, passes nginx -t."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=notify.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with open(os.path.join(ROOT, "contrib", "nginx", "rulecast.conf")) as f:
        site = re.sub(r"ssl_certificate_key\s+\S+;", "ssl_certificate_key %s;" % key, f.read())
    site = re.sub(r"ssl_certificate\s+\S+;", "ssl_certificate %s;" % cert, site)
    (tmp_path / "rulecast.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text("pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n"
                    "  access_log off;\n  client_body_temp_path %s;\n  include %s;\n}\n"
                    % (tmp_path, tmp_path, tmp_path, tmp_path / "rulecast.conf"))
    r = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_systemd_unit_has_what_operations_need():
    """The unit starts serve with a config, reloads with SIGHUP and raises the fd limit."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(os.path.join(ROOT, "contrib", "systemd", "rulecast.service"))
    service = unit["Service"]
    assert "rulecast serve --config" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert int(service["LimitNOFILE"]) >= 65536
    assert unit["Install"]["WantedBy"] == "multi-user.target"
