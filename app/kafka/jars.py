"""Apache Kafka's broker jars from Maven Central, resolved once into the cache directory.

No Docker and no tarball: ``docker/kafka/pom.xml`` names ``org.apache.kafka:kafka_2.13``
(which pulls the broker's modules) and log4j; Maven copies the runtime class path into
``<cache>/kafka/<version>/libs``, marked complete by a ``.complete`` file.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

__all__ = ["POM", "JarsError", "ensure_jars"]

logger = logging.getLogger(__name__)

POM = Path(__file__).resolve().parents[2] / "docker" / "kafka" / "pom.xml"


class JarsError(RuntimeError):
    """Kafka's jars could not be resolved; the message says what to install or fix."""


def ensure_jars(libs: Path, version: str) -> bool:
    """Resolve the jars of Kafka ``version`` into ``libs``; True if anything was fetched."""
    marker = libs / ".complete"
    if marker.exists():
        return False
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None:
        raise JarsError("java was not found on PATH; install Java 17 or newer")
    if mvn is None:
        raise JarsError("mvn was not found on PATH; install Apache Maven to fetch Kafka")
    if not POM.exists():
        raise JarsError(f"the broker pom {POM} is missing; run from a fedstream checkout")
    libs.mkdir(parents=True, exist_ok=True)
    logger.info("resolving Apache Kafka %s jars from Maven Central into %s", version, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-Dkafka.version={version}", f"-DoutputDirectory={libs}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise JarsError(f"Maven could not fetch Kafka {version}: {' | '.join(tail)}")
    marker.write_text(version)
    return True
