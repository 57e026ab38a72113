"""The settings of FedMD on Flower that FedMD itself does not have (lesson 6).

FedMD's own settings (rounds, subset, epochs, consensus, rule, seed) are
:class:`fedkd_lessons.fedmd.FedMDSettings`, the same object as in one process. Beside them:

- :class:`FlowerSettings`: how the deployment behaves (when a round closes without every reply,
  how long start-up and the run may take, TLS and SuperNode authentication);
- :class:`RunFacts`: what the launcher learns while it starts the run and the ServerApp must know
  (how many nodes, the public set's size, which node is which party, where to write the record).

Both travel to the ServerApp in Flower's run-config, as ``flwr run --run-config`` key-value pairs;
each converts itself to and from it, so no app converts a setting by hand.
"""

from dataclasses import dataclass, field

from fedkd_lessons.engine.validation import POSITIVE, Instance, Integer, check_fields
from fedkd_lessons.flower.app.protocol import RoundPolicy


def _run_config_key(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class FlowerSettings:
    """How FedMD is deployed on Flower.

    Args:
        min_replies, round_timeout, grace: the server's :class:`RoundPolicy` (when a round closes
            without every good reply).
        connect_timeout: seconds for each start-up step (the SuperLink to listen, the keys to be
            registered, ``flwr run`` to submit, every party to connect).
        run_timeout: seconds for the whole run, from the SuperLink's start to the ServerApp's record.
        secure: TLS and SuperNode authentication (credentials made for the run), or ``--insecure``.
    """

    min_replies: int = 1
    round_timeout: float = 120.0
    grace: float = 6.0
    connect_timeout: float = 60.0
    run_timeout: float = 300.0
    secure: bool = True

    RUN_CONFIG = ("min_replies", "round_timeout", "grace", "connect_timeout")  # what the ServerApp needs

    def __post_init__(self):
        check_fields(self, min_replies=Integer(1), round_timeout=POSITIVE, grace=POSITIVE, connect_timeout=POSITIVE,
                     run_timeout=POSITIVE, secure=Instance(bool))

    @property
    def policy(self) -> RoundPolicy:
        return RoundPolicy(self.min_replies, self.round_timeout, self.grace)

    def to_run_config(self) -> dict:
        return {_run_config_key(name): getattr(self, name) for name in self.RUN_CONFIG}

    @classmethod
    def from_run_config(cls, config) -> "FlowerSettings":
        """The ServerApp's part of the settings (the launcher's own keep their defaults)."""
        missing = [name for name in cls.RUN_CONFIG if _run_config_key(name) not in config]
        if missing:
            raise ValueError(f"the run-config lacks Flower's settings {missing}")
        return cls(**{name: config[_run_config_key(name)] for name in cls.RUN_CONFIG})


@dataclass(frozen=True)
class RunFacts:
    """What the launcher tells the ServerApp about one run.

    Args:
        num_parties: SuperNodes to wait for (a twin counts).
        public_size: samples in the public set, from which the server draws each round's subset.
        classes: scores per public sample (10 digits + 6 letters).
        registered: node id -> party id, bound when each party's key was registered (empty: a run
            without authentication, where each node is bound to the id it first claims).
        result_dir: where the ServerApp writes its progress and record.
    """

    num_parties: int
    public_size: int
    classes: int
    result_dir: str
    registered: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        check_fields(self, num_parties=Integer(1), public_size=Integer(1), classes=Integer(1),
                     result_dir=Instance(str), registered=Instance(dict))

    def to_run_config(self) -> dict:
        return {"num-parties": self.num_parties, "public-size": self.public_size, "classes": self.classes,
                "result-dir": self.result_dir,
                "registered": " ".join(f"{node}:{party}" for node, party in self.registered.items())}

    @classmethod
    def from_run_config(cls, config) -> "RunFacts":
        registered = {}
        for pair in str(config["registered"]).split():
            node, _, party = pair.partition(":")
            if not (node.isdigit() and party.isdigit()):
                raise ValueError(f"registered must be 'NODE:PARTY' pairs of integers, got {pair!r}")
            registered[int(node)] = int(party)
        return cls(int(config["num-parties"]), int(config["public-size"]), int(config["classes"]),
                   str(config["result-dir"]), registered)
