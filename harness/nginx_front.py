"""Real nginx in front of the gateway, configured with deploy/kubepie/nginx/kubepie.conf."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.hub import free_port
from harness.tools import REPO, require_tool, wait_http

CONF = REPO / "deploy" / "kubepie" / "nginx" / "kubepie.conf"


@dataclass
class NginxFront:
    folder: Path
    gateway_port: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxFront:
        nginx = require_tool("nginx", Path("/usr/sbin"))
        site = CONF.read_text().replace("127.0.0.1:8780", f"127.0.0.1:{self.gateway_port}") \
            .replace("listen 8790;", f"listen 127.0.0.1:{self.port};") \
            .replace("/var/cache/nginx/kubepie-auth", str(self.folder / "nginx-auth-cache"))
        temp = self.folder / "nginx-temp"
        temp.mkdir(parents=True, exist_ok=True)
        (self.folder / "nginx.conf").write_text(f"""
daemon off;
worker_processes 2;
pid {self.folder}/nginx.pid;
error_log {self.folder}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{site}
}}
""")
        self.process = subprocess.Popen([nginx, "-c", str(self.folder / "nginx.conf"),
                                         "-e", str(self.folder / "nginx-error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/_kubepie/none", timeout=20)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

