"""A private Kafka 3.9 broker (one KRaft node) with an SSL listener and a SASL_SSL
listener (SCRAM-SHA-256), on free loopback ports, for the TLS/SASL tests.

It runs from the jars deploy/setup.sh downloads ($MLOPS_STATE_DIR/kafka-libs, or
MLOPS_TEST_KAFKA_LIBS) in the same way deploy/stack.sh runs the local stack's broker
(StorageTool format, then kafka.Kafka), with its own config, data and certificates in a
temporary folder; the default stack is not touched."""
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def kafka_libs():
    env = os.environ.get("MLOPS_TEST_KAFKA_LIBS")
    if env:
        return Path(env)
    state = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
    return state / "kafka-libs"


def die_with_parent():
    """In the child before exec: SIGTERM when the test process dies (even by SIGKILL,
    e.g. a CTest timeout), so no broker outlives its test."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    """A self-signed CA: d/name.key, d/name.pem."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=mlops test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return d / f"{name}.pem"


def make_broker_cert(d, ca):
    """A broker certificate for 127.0.0.1 and localhost signed by `ca`; returns a PEM
    key store (unencrypted PKCS#8 key, then the certificate chain)."""
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "broker.key", cwd=d)
    openssl("req", "-new", "-key", "broker.key", "-out", "broker.csr", "-subj",
            "/CN=localhost", cwd=d)
    (d / "broker.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "broker.ext",
            cwd=d)
    store = d / "broker-keystore.pem"
    store.write_text((d / "broker.key").read_text() + (d / "broker.pem").read_text()
                     + (d / f"{ca}.pem").read_text())
    return store


class TlsBroker:
    def __init__(self, tmp, user, password):
        self.tmp = Path(tmp)
        self.user, self.password = user, password
        self.libs = kafka_libs()
        if not list(self.libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no Kafka jars in {self.libs}: run deploy/setup.sh kafka "
                               "(or set MLOPS_TEST_KAFKA_LIBS)")
        self.certs = self.tmp / "certs"
        self.certs.mkdir()
        self.ca = make_ca(self.certs, "ca")
        self.other_ca = make_ca(self.certs, "other-ca")
        self.keystore = make_broker_cert(self.certs, "ca")
        self.ssl_port, self.sasl_port, self.ctl_port = free_ports(3)
        self.proc = None
        self.out = self.tmp / "kafka.out"

    @property
    def ssl_brokers(self):
        return f"{HOST}:{self.ssl_port}"

    @property
    def sasl_brokers(self):
        return f"{HOST}:{self.sasl_port}"

    def write_config(self):
        data = self.tmp / "data"
        props = self.tmp / "server.properties"
        props.write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{self.ctl_port}
listeners=SSL://{HOST}:{self.ssl_port},SASL_SSL://{HOST}:{self.sasl_port},CONTROLLER://{HOST}:{self.ctl_port}
advertised.listeners=SSL://{HOST}:{self.ssl_port},SASL_SSL://{HOST}:{self.sasl_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
log.dirs={data}
ssl.keystore.type=PEM
ssl.keystore.location={self.keystore}
ssl.truststore.type=PEM
ssl.truststore.location={self.ca}
ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
min.insync.replicas=1
default.replication.factor=1
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.io.buffer.size=262144
""")
        return props

    def java(self, *args):
        return ["java", *args, "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{ROOT}/deploy/kafka/tools-log4j.properties",
                "-cp", f"{self.libs}/*"]

    def start(self, timeout=60):
        props = self.write_config()
        fmt = subprocess.run(
            [*self.java("-Xms64m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"),
             "kafka.tools.StorageTool", "format", "-t", "tls-test-cluster-0000", "-c", str(props),
             "--add-scram",
             f"SCRAM-SHA-256=[name={self.user},password={self.password}]"],
            capture_output=True, text=True, timeout=60)
        if fmt.returncode:
            raise RuntimeError(f"kafka storage format failed: {fmt.stdout}{fmt.stderr}")
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                [*self.java("-Xms128m", "-Xmx384m", "-XX:TieredStopAtLevel=1",
                            "-XX:+UseSerialGC"), "kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited at start:\n{self.log_tail()}")
            probe = subprocess.run(
                ["kcat", "-L", "-b", self.ssl_brokers, "-m", "2", "-X", "security.protocol=ssl",
                 "-X", f"ssl.ca.location={self.ca}"], capture_output=True, text=True)
            if probe.returncode == 0 and " 1 brokers:" in probe.stdout:
                return
            time.sleep(0.2)
        raise RuntimeError(f"kafka not up after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n=30):
        try:
            return "\n".join(self.out.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
