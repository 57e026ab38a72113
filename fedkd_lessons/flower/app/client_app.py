"""FedMD's party side on Flower: one ``ClientApp`` run per message from the server (lesson 6).

Every SuperNode is started with ``--node-config "party-id=K party-dir='...'"``: which party it is
and where its own disk is (and, for the fault-injection tests, ``faults='...'``: :mod:`.faults`).
On each message the party loads its state from that disk; if the message brings a consensus, it
digests it and revisits its private data (:func:`fedkd_lessons.fedmd.digest` and
:func:`fedkd_lessons.fedmd.revisit`, the functions of the run in one process); it reports its test
accuracy, scores the requested public images (:func:`fedkd_lessons.fedmd.party_logits`), writes its
state back and replies. Its architecture, weights and private letters never leave the directory.
"""

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedkd_lessons.fedmd import FedMDSettings, digest, party_logits, revisit
from fedkd_lessons.flower.app.faults import parse_faults, pause_if_asked, spoil_reply
from fedkd_lessons.flower.app.party_disk import load_party, load_shared_data, save_party, write_diary
from fedkd_lessons.flower.app.protocol import party_reply, read_server_message
from fedkd_lessons.engine.models import accuracy
from fedkd_lessons.engine.seeding import seed_everything

app = ClientApp()


@app.train()
def fedmd_step(message: Message, context: Context) -> Message:
    """Digest + revisit (end of round ``j``), then communicate (start of round ``j + 1``)."""
    directory = Path(str(context.node_config["party-dir"]))
    party_id = int(context.node_config["party-id"])
    settings = FedMDSettings.from_run_config(context.run_config)  # the same settings object as run_fedmd's
    party = load_party(directory)
    public_images, test_images, test_labels = load_shared_data(directory)
    request = read_server_message(message.content)
    # One torch thread, as in lesson 5's process (the thread count changes the order of float sums).
    # Dropout draws from torch's global stream, which a fresh process would start at the same place
    # every message: seed it per party and message instead. (In one process all parties share that
    # stream, so a party with dropout cannot match lesson 5's run draw for draw; its own shuffling
    # stream, party.generator, is saved on its disk and does match.)
    seed_everything(1000 * party.seed + request.message_number)

    fault = parse_faults(str(context.node_config.get("faults", ""))).get(request.message_number)
    if request.consensus is not None:
        write_diary(directory, request.message_number, "received", request.consensus)
        pause_if_asked(fault)
        digest(party, public_images[request.consensus_indices], request.consensus, epochs=settings.digest_epochs,
               batch_size=settings.digest_batch_size, kind=settings.kind, temperature=settings.temperature)
        revisit(party, epochs=settings.revisit_epochs)
    score = accuracy(party.model, test_images, test_labels)
    logits = None
    if request.indices is not None:
        logits = party_logits(party, public_images, request.indices)
        write_diary(directory, request.message_number + 1, "sent", logits)
    save_party(directory, party)
    party_id, logits = spoil_reply(fault, party_id, logits)
    return Message(party_reply(party_id, score, logits), reply_to=message)
