"""The market: one handler per input kind, each a rule of the game.

Every handler works on a copy of the state; the copy replaces the state only when the handler
returns, so a refused input (InputRefused) or a bug leaves the state exactly as it was. Deposits
are the exception that proves the rule: money that a portal already moved is always recorded,
so a deposit whose job cannot be opened is credited to the depositor's balance instead.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import asdict
from typing import Any, Callable, Collection

import numpy as np

from dapp import canonical
from dapp.hashing import keccak
from dapp.content.cid import Cid
from dapp.content.errors import ContentMissing, ContentUnavailable
from dapp.content.inbox import ContentInbox, UploadRefused
from dapp.content.source import ContentSource
from dapp.content.unixfs import chunk as unixfs_chunk
from dapp.market import batch as signed_batch
from dapp.market import payout as batch_payout
from dapp.market import protocol as p
from dapp.market.closing import close_round
from dapp.market.datacard import DataCardError, parse_data_card
from dapp.market.ledger import InsufficientBalance
from dapp.market.spec import JobSpec, parse_spec
from dapp.market.state import (CANCELLED, FINISHED, OPEN, Job, JobDigests, MarketState, Round,
                               Submission, peek_job)
from dapp.ml.hparams import initial_hparams
from dapp.ml.model_format import Model, decode_dataset, decode_model, encode_model, model_hash
from dapp.ml.rewards import settle_to_value, split_whole
from dapp.outputs import InputRefused, Outputs, quote
from dapp.rollup_api import Metadata

MODEL_REPORT_CHUNK = 256 * 1024


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class Market:
    """The backend application behind the rollup loop."""

    def __init__(self, content: ContentSource | None, inbox: ContentInbox | None = None) -> None:
        """`content` is the GIO source (None where the node serves no GIO, e.g. the official
        node); `inbox` holds content posted through inputs."""
        self.state = MarketState()
        self.content = content
        self.inbox = inbox if inbox is not None else ContentInbox()
        self._after_commit: list[Callable[[], None]] = []
        self._user = ""           # the account whose input is being handled
        self._specs: dict[str, JobSpec] = {}
        self._models: dict[str, Model] = {}        # by model hash: globals and this round's updates
        self._shards: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # by shard cid
        self._job_digests = JobDigests()  # for the free `state` query

    # ---- entry points ------------------------------------------------------------------

    def advance(self, meta: Metadata, payload: bytes) -> Outputs:
        out = Outputs()
        work = self.state.trial()
        self._after_commit = []
        sender = meta.msg_sender.lower()
        self._user = sender       # whose input this is (a deposit's depositor, below)
        if sender == p.ETHER_PORTAL:
            d = p.decode_ether_deposit(payload)
            self._deposit(work, out, meta, p.ETH, d.sender, d.value, d.exec_layer_data)
        elif sender == p.ERC20_PORTAL:
            d20 = p.decode_erc20_deposit(payload)
            self._deposit(work, out, meta, d20.token, d20.sender, d20.value, d20.exec_layer_data)
        else:
            try:
                call = p.decode_account_call(payload)
            except p.ProtocolError as exc:
                raise InputRefused(str(exc)) from None
            handler: Callable[..., None] = getattr(self, "_on_" + type(call).__name__)
            handler(work, out, meta, sender, call)
        assert work.conserved(), "money conservation broken"
        self.state = work.commit(self._job_digests)
        for step in self._after_commit:
            step()
        self._after_commit = []
        self._forget_unused()
        return out

    def digest(self, cached: bool = False) -> bytes:
        """Everything that decides future outputs: the market state and the content inbox.
        `cached` reuses the hashes of jobs no input touched since they were last hashed and the
        balances' multiset hash kept as they move (what the free `state` query answers); the
        default re-hashes everything."""
        known = self._job_digests if cached else None
        return keccak(self.state.digest(known) + self.inbox.digest())

    def inspect(self, payload: bytes) -> Outputs:
        out = Outputs()
        out.report(canonical.dumps(self.query(payload.decode("utf-8", "replace").strip("/"))))
        return out

    # ---- deposits ----------------------------------------------------------------------

    def _deposit(self, st: MarketState, out: Outputs, meta: Metadata, token: str, sender: str,
                 value: int, exec_layer_data: bytes) -> None:
        self._user = sender
        st.ledger.record_deposit(token, value)
        returned_to = batch_payout.returned_payee(exec_layer_data)
        if sender == meta.app_contract.lower() and returned_to is not None:
            self._payout_returned(st, out, token, returned_to, value)
            return
        if not exec_layer_data:
            st.ledger.credit(token, sender, value)
            out.report(canonical.dumps({"type": "deposit", "account": sender, "token": token,
                                        "amount": str(value)}))
            return
        try:
            job = self._open_job(st, meta, token, sender, value, exec_layer_data)
        except Exception as exc:  # whatever went wrong, the portal already moved the money
            if isinstance(exc, ContentUnavailable):
                raise  # not a verdict: the loop stops or retries; crediting would be a decision
            # The job was not opened, so nothing it read was used: drop what _open_job
            # scheduled (releasing the content it fetched from the inbox), or a 0-wei createJob
            # naming anyone's content would evict it. Only _open_job schedules steps here.
            self._after_commit.clear()
            reason = getattr(exc, "reason", str(exc))
            st.ledger.credit(token, sender, value)
            out.report(f"job not created, deposit of {value} credited to the balance of "
                       f"{sender}: {reason}")
            return
        out.notice(canonical.dumps({
            "type": "job_opened", "job": job.id, "owner": job.owner, "token": token,
            "budget": str(value), "spec_cid": job.spec_cid,
            "rounds": self._specs[job.spec_cid].rounds, "model_cid": job.global_model_cid,
            "model_hash": job.global_model_hash, "round_start": job.current.start}))

    def _open_job(self, st: MarketState, meta: Metadata, token: str, owner: str, value: int,
                  exec_layer_data: bytes) -> Job:
        call = p.decode_create_job(exec_layer_data)
        spec_bytes = self._fetch(call.spec_cid, 64 * 1024, "job spec")
        spec = parse_spec(spec_bytes)
        if value < spec.rounds:
            raise InputRefused(f"budget {value} is smaller than the number of rounds")
        model_bytes = self._fetch(spec.initial_model, spec.limits.max_model_bytes, "initial model",
                                  spec.content_source)
        model = self._decode_model(model_bytes, spec)
        public = None
        if spec.public_validation is not None:
            public = self._decode_shard(self._fetch(
                spec.public_validation, spec.limits.max_shard_bytes, "public validation shard",
                spec.content_source), spec, spec.public_validation, "public validation shard")
        _, model_cid, digest = _publish(model, spec)
        job = Job(id=st.next_job_id, owner=owner, token=token, budget=value, escrow=value,
                  spec_cid=call.spec_cid, opened_at=meta.block_timestamp, status=OPEN,
                  global_model_cid=model_cid, global_model_hash=digest,
                  hparams=initial_hparams(spec.hparams))
        job.rounds.append(Round(0, meta.block_timestamp + spec.windows.start_delay,
                                spec.round_budget(value, 0)))
        st.jobs[job.id] = job
        st.next_job_id += 1
        self._specs[call.spec_cid] = spec
        self._models[digest] = model
        if public is not None:
            self._shards[str(spec.public_validation)] = public
        return job

    # ---- account inputs ----------------------------------------------------------------

    def _on_Join(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                 call: p.Join) -> None:
        job = self._open(st, call.job_id)
        spec = self._spec(job)
        if sender in job.trainers:
            raise InputRefused(f"{sender} already joined job {job.id}")
        if len(job.trainers) >= spec.max_trainers:
            raise InputRefused(f"job {job.id} is full ({spec.max_trainers} trainers)")
        job.trainers = sorted(job.trainers + [sender])
        out.report(f"{sender} joined job {job.id}")

    def _on_Commit(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                   call: p.Commit) -> None:
        job, rnd, spec = self._round(st, call.job_id, call.round)
        if sender not in job.trainers:
            raise InputRefused(f"{sender} has not joined job {job.id}")
        start, end = rnd.start, rnd.start + spec.windows.commit
        self._window(meta, "commit", start, end)
        if sender in rnd.commits:
            raise InputRefused(f"{sender} already committed in round {rnd.index} of job {job.id}")
        rnd.commits[sender] = _hex(call.commitment)
        out.report(f"commitment of {sender} recorded for round {rnd.index} of job {job.id}")

    def _on_Reveal(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                   call: p.Reveal) -> None:
        job, rnd, spec = self._round(st, call.job_id, call.round)
        w = spec.windows
        self._window(meta, "reveal", rnd.start + w.commit, rnd.start + w.commit + w.reveal)
        if sender not in rnd.commits:
            raise InputRefused(f"{sender} did not commit in round {rnd.index} of job {job.id}")
        if sender in rnd.reveals:
            raise InputRefused(f"{sender} already revealed in round {rnd.index} of job {job.id}")
        expected = p.commitment(sender, job.id, rnd.index, call.model_cid, call.data_cid,
                                call.salt)
        if _hex(expected) != rnd.commits[sender]:
            raise InputRefused("reveal does not match your commitment (model cid, data cid, "
                               "salt, job, round and sender must be the committed ones)")
        model = self._decode_model(
            self._fetch(call.model_cid, spec.limits.max_model_bytes, "model",
                        spec.content_source), spec)
        digest = _hex(model_hash(model))
        if digest == job.global_model_hash:
            raise InputRefused("the model is the current global model unchanged: no training")
        if digest in job.revealed_model_hashes:
            raise InputRefused("the model copies an update revealed in an earlier round")
        card_bytes = self._fetch(call.data_cid, spec.limits.max_card_bytes, "data card",
                                 spec.content_source)
        try:
            card = parse_data_card(card_bytes, spec.data_schema)
        except DataCardError as exc:
            raise InputRefused(f"invalid data card {call.data_cid}: {exc}") from None
        rnd.reveals[sender] = Submission(call.model_cid, call.data_cid, digest,
                                         card.weight(spec.data_schema), card.num_samples,
                                         ",".join(map(str, card.label_histogram)))
        self._models[digest] = model
        out.report(f"update of {sender} accepted for round {rnd.index} of job {job.id}")

    def _on_RevealValidation(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                             call: p.RevealValidation) -> None:
        job, rnd, spec = self._round(st, call.job_id, call.round)
        if sender != job.owner:
            raise InputRefused(f"only the job owner {job.owner} reveals validation shards")
        w = spec.windows
        self._window(meta, "validation", rnd.start + w.commit,
                     rnd.start + w.commit + w.reveal + w.validation)
        if rnd.validation_cid is not None:
            raise InputRefused(f"validation shard of round {rnd.index} already revealed")
        if p.validation_commitment(call.shard_cid, call.salt) != \
                spec.validation_commitments[rnd.index]:
            raise InputRefused("shard cid and salt do not match the spec's commitment for "
                               f"round {rnd.index}")
        data = self._fetch(call.shard_cid, spec.limits.max_shard_bytes, "validation shard",
                           spec.content_source)
        shard = self._decode_shard(data, spec, call.shard_cid, "validation shard")
        rnd.validation_cid = call.shard_cid
        self._shards[call.shard_cid] = shard
        out.report(f"validation shard of round {rnd.index} of job {job.id} revealed")

    def _on_CloseRound(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                       call: p.CloseRound) -> None:
        job, rnd, spec = self._round(st, call.job_id, call.round)
        w = spec.windows
        reveal_end = rnd.start + w.commit + w.reveal
        validation_end = reveal_end + w.validation
        now = meta.block_timestamp
        if now < reveal_end:
            raise InputRefused(f"round {rnd.index} cannot close before its reveal window ends "
                               f"at {reveal_end} (block time {now})")
        if rnd.validation_cid is None and now < validation_end:
            raise InputRefused(f"round {rnd.index} waits for the owner's validation shard until "
                               f"{validation_end} (block time {now})")
        # _forget_unused keeps every open round's shard, so a revealed one is always here.
        shard = self._shards[rnd.validation_cid] if rnd.validation_cid else None
        public = (self._shards[spec.public_validation] if spec.public_validation is not None
                  else None)
        updates = {a: self._models[s.model_hash] for a, s in rnd.reveals.items()}
        result = close_round(spec, job, rnd, self._models[job.global_model_hash], updates, shard,
                             public)
        # The cards' histograms served the close only: closed rounds do not keep them.
        for sub in rnd.reveals.values():
            sub.label_histogram = ""

        for addr in sorted(result.payouts):
            st.ledger.credit(job.token, addr, result.payouts[addr])
            if result.payouts[addr]:
                job.paid[addr] = job.paid.get(addr, 0) + result.payouts[addr]
        paid = sum(result.payouts.values())
        job.escrow -= paid
        model_bytes, job.global_model_cid, job.global_model_hash = _publish(result.model, spec)
        self._models[job.global_model_hash] = result.model
        job.hparams = result.hparams
        if result.price is not None:
            job.price = canonical.fraction_str(result.price)
        for addr, created in sorted(result.value.items()):
            job.value[addr] = job.value.get(addr, 0) + created
        if result.accuracy:
            job.accuracy_history.append(result.accuracy[0])
        job.revealed_model_hashes = sorted(
            set(job.revealed_model_hashes) | {s.model_hash for s in rnd.reveals.values()})
        summary: dict[str, Any] = {
            "type": "round_closed", "job": job.id, "round": rnd.index, "token": job.token,
            "budget": str(rnd.budget), "paid": str(paid), "carried": str(result.carried),
            "model_cid": job.global_model_cid, "model_hash": job.global_model_hash,
            "model_bytes": len(model_bytes),
            "accuracy": ({"correct": result.accuracy[0], "total": result.accuracy[1]}
                         if result.accuracy else None),
            "validation_cid": rnd.validation_cid, "fallback": result.fallback,
            "scoring": result.scoring,
            "hparams": result.hparams, "trainers": result.trainers}
        if job.price:
            summary["price"] = job.price
        if result.advance is not None:
            summary["advance"] = canonical.fraction_str(result.advance)
        last = rnd.index + 1 >= spec.rounds
        if last:
            # Declared: the last round's budget holds everything earlier rounds carried. A
            # ``pay: "settle"`` job that created value settles: what is left tops its earners up
            # towards their share of the job's pay by the value each created
            # (``settle_to_value``). Otherwise, when the last round paid nobody, or the job pays
            # at a price (``pay: "value"``: rounds spent what their value was worth), what is
            # left goes to the job's earners pro rata to what they earned (floor; the dust to
            # the top earner, ties to the smallest address), so the owner is refunded only when
            # nobody earned anything in the whole job. Otherwise what is left is the last
            # round's floor dust (under one wei per payee), refunded.
            settled = sum(job.value.values()) > 0
            if settled:
                leftover = settle_to_value(job.escrow, job.value, job.paid)
            elif paid == 0 or job.price:
                leftover = split_whole(job.escrow, job.paid)
            else:
                leftover = {}
            for addr, amount in leftover.items():
                st.ledger.credit(job.token, addr, amount)
                job.paid[addr] = job.paid.get(addr, 0) + amount
            refund = job.escrow - sum(leftover.values())
            st.ledger.credit(job.token, job.owner, refund)
            job.escrow = 0
            job.status = FINISHED
            summary["job_finished"] = {"refund": str(refund), "owner": job.owner,
                                       "leftover": {a: str(v) for a, v in leftover.items()}}
            if settled:   # how "leftover" was split: by value created, not pro rata to pay
                summary["job_finished"]["leftover_by"] = "value"
        else:
            nxt = rnd.index + 1
            job.rounds.append(Round(nxt, now, spec.round_budget(job.budget, nxt) + result.carried))
            summary["next_round"] = {"round": nxt, "start": now,
                                     "budget": str(job.rounds[-1].budget)}
        rnd.summary = {k: v for k, v in summary.items() if k != "type"}
        out.notice(canonical.dumps(summary))
        for chunk in p.ModelChunk.split(job.id, rnd.index, model_bytes, MODEL_REPORT_CHUNK):
            out.report(chunk.encode())

    def _on_Withdraw(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                     call: p.Withdraw) -> None:
        token = call.token.lower()
        if call.amount == 0:
            raise InputRefused("withdraw amount must be positive")
        try:
            st.ledger.debit(token, sender, call.amount)
        except InsufficientBalance as exc:
            raise InputRefused(f"withdraw beyond balance: {exc}") from None
        st.ledger.record_withdrawal(token, call.amount)
        if token == p.ETH:
            out.voucher(sender, call.amount, b"")
        else:
            out.voucher(token, 0, p.erc20_transfer_payload(sender, call.amount))
        out.notice(canonical.dumps({"type": "withdrawal", "account": sender, "token": token,
                                    "amount": str(call.amount)}))

    def _on_CancelJob(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                      call: p.CancelJob) -> None:
        job = self._open(st, call.job_id)
        if sender != job.owner:
            raise InputRefused(f"only the job owner {job.owner} can cancel job {job.id}")
        if meta.block_timestamp >= job.rounds[0].start or job.rounds[0].commits:
            raise InputRefused(f"job {job.id} cannot be cancelled: its first round started at "
                               f"{job.rounds[0].start}")
        st.ledger.credit(job.token, job.owner, job.escrow)
        refund, job.escrow, job.status = job.escrow, 0, CANCELLED
        out.notice(canonical.dumps({"type": "job_cancelled", "job": job.id,
                                    "refund": str(refund), "owner": job.owner}))

    def _on_PutContent(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                       call: p.PutContent) -> None:
        try:
            step = self.inbox.plan_put(call.cid, call.total_size, call.index, call.data,
                                       meta.block_timestamp, uploader=sender)
        except UploadRefused as exc:
            raise InputRefused(str(exc)) from None
        self._after_commit.append(lambda: out.report(step().message))

    # ---- batched, signed submissions and batched payouts (dapp/market/batch.py, payout.py)

    def _on_Batch(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                  call: p.Batch) -> None:
        """Each message is handled as if its signer had sent it alone, on its own copy of the
        state: a malformed, badly signed, replayed or refused message is reported and changes
        nothing, the others stand. Only unframeable bytes refuse the whole input."""
        try:
            bodies = signed_batch.split(call.messages)
        except p.ProtocolError as exc:
            raise InputRefused(str(exc)) from None
        taken: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        for i, body in enumerate(bodies):
            try:
                msg = signed_batch.parse(body, meta.chain_id, meta.app_contract.lower())
            except signed_batch.MessageError as exc:
                refused.append({"index": i, "reason": str(exc)})
                continue
            trial = st.trial(share_ledger=True)  # join, commit and reveal write jobs only
            sub = Outputs()
            mark = len(self._after_commit)
            handler: Callable[..., None] = getattr(self, "_on_" + type(msg.call).__name__)
            self._user = msg.signer   # as if the signer had sent it: its own content is released
            try:
                handler(trial, sub, meta, msg.signer, msg.call)
            except InputRefused as exc:
                del self._after_commit[mark:]
                refused.append({"index": i, "signer": msg.signer,
                                "kind": type(msg.call).__name__.lower(), "reason": exc.reason})
                continue
            vars(st).update(vars(trial.commit()))
            out.emitted.extend(sub.emitted)
            out.reports.extend(sub.reports)
            taken.append({"index": i, "signer": msg.signer,
                          "kind": type(msg.call).__name__.lower()})
        out.report(canonical.dumps({"type": "batch", "messages": len(bodies), "taken": taken,
                                    "refused": refused}))

    def _on_Payout(self, st: MarketState, out: Outputs, meta: Metadata, sender: str,
                   call: p.Payout) -> None:
        """Anyone may ask: every balance in the token (up to MAX_PAYEES, by address) leaves in
        one DelegateCallVoucher, exactly as if each account had sent `withdraw` of all of it."""
        token = call.token.lower()
        payees = batch_payout.plan(st.ledger, token, exclude={meta.app_contract.lower(), p.ETH})
        if not payees:
            raise InputRefused(f"no balance in token {token} to pay out")
        total = 0
        for account, amount in payees:
            st.ledger.debit(token, account, amount)
            total += amount
        st.ledger.record_withdrawal(token, total)
        out.delegate_call_voucher(batch_payout.BATCH_PAYOUT,
                                  batch_payout.pay_payload(token, payees))
        out.notice(canonical.dumps({
            "type": "payout", "token": token, "library": batch_payout.BATCH_PAYOUT,
            "total": str(total),
            "payees": [{"account": a, "amount": str(v)} for a, v in payees]}))

    def _payout_returned(self, st: MarketState, out: Outputs, token: str, payee: str,
                         value: int) -> None:
        """BatchPayout could not pay `payee` and deposited the amount back (its sender is this
        Application): the payee's balance gets it again."""
        st.ledger.credit(token, payee, value)
        out.notice(canonical.dumps({"type": "payout_returned", "account": payee,
                                    "token": token, "amount": str(value)}))

    # ---- queries -----------------------------------------------------------------------

    def query(self, path: str) -> Any:
        """Inspect paths: jobs | jobs/open | job/<id> | job/<id>/round/<r> | balance/<address> |
        token/<address> | tokens | content/<cid> | state. Every answer is bounded, whatever
        anyone has added to the market: lists come in pages (`/page/<k>`), job lists also after
        a cursor (`/after/<id>`)."""
        parts = path.split("/") if path else [""]
        st = self.state
        head, sep, number = path.rpartition("/page/")
        cursor = False
        if not sep:
            head, sep, number = path.rpartition("/after/")
            cursor = bool(sep)
        listing = head if sep else path
        if listing in ("jobs", "jobs/open") or (listing == "tokens" and not cursor):
            # jobs: every job; jobs/open: what a trainer can join (after 100 jobs of any kind,
            # new ones were past the first page of `jobs`); tokens: each token's totals.
            n = _int(number) if sep else 0
            if listing == "tokens":
                return [self._token(st, t) for t in _page(st.ledger.deposited, n)]
            # The ids are already ascending, which sorted() finds in one pass
            # (bench/state_growth.py: the last page at 100,000 jobs, 2.5 ms).
            every = sorted(st.jobs) if listing == "jobs" else st.open_jobs()
            # After a cursor: the next ids whatever closed meanwhile (an offset page shifts by
            # one when a job before it closes, so a client reading page by page missed a job).
            start = bisect.bisect_right(every, n)
            ids = every[start:start + p.PAGE] if cursor else _page(every, n)
            return [{"job": j.id, "owner": j.owner, "status": j.status, "token": j.token,
                     "budget": str(j.budget), "round": j.current.index, "spec_cid": j.spec_cid,
                     "model_cid": j.global_model_cid} for j in (st.jobs[i] for i in ids)]
        if parts[0] == "job" and len(parts) in (2, 4):
            job = self._job(st, _int(parts[1]))
            if len(parts) == 2:
                data = asdict(job)
                # Bounded answer: the full list grows with every round; the count is enough here.
                data["revealed_model_hashes"] = len(job.revealed_model_hashes)
                data["rounds"] = [{"round": r.index, "start": r.start, "closed": r.closed,
                                   "commits": len(r.commits), "reveals": len(r.reveals)}
                                  for r in job.rounds]
                data["budget"], data["escrow"] = str(job.budget), str(job.escrow)
                return data
            if parts[2] == "round":
                r = _int(parts[3])
                if not 0 <= r < len(job.rounds):
                    raise InputRefused(f"job {job.id} has no round {r} yet")
                data = asdict(job.rounds[r])
                data["budget"] = str(data["budget"])
                return data
        if parts[0] == "balance" and len(parts) == 2:
            acct = _address(parts[1])
            return {"account": acct, "balances": {
                t: str(v[acct]) for t, v in sorted(st.ledger.balances.items()) if acct in v}}
        if parts[0] == "content" and len(parts) in (2, 3):
            if len(parts) == 3:
                _address(parts[2])
            try:
                return (self.inbox.status(parts[1]) if len(parts) == 2
                        else self.inbox.status(parts[1], uploader=parts[2].lower()))
            except Exception as exc:
                raise InputRefused(f"bad content id {quote(parts[1])}: {exc}") from None
        if parts[0] == "token" and len(parts) == 2:
            return self._token(st, _address(parts[1]))
        if parts == ["state"]:
            # Of fixed size: per-token totals are `token/<address>` and `tokens/page/<k>`
            # (listing them here outgrew an output at about 10,000 tokens, one ERC-20 deposit
            # each); the digest covers them.
            return {"digest": _hex(self.digest(cached=True)),
                    "inbox_bytes": self.inbox.held_bytes(), "jobs": len(st.jobs),
                    "tokens": len(st.ledger.deposited)}
        raise InputRefused(f"unknown query {quote(path)}: try jobs, jobs/page/<k>, "
                           f"jobs/after/<id>, jobs/open, jobs/open/page/<k>, "
                           f"jobs/open/after/<id>, job/<id>, "
                           f"job/<id>/round/<r>, balance/<address>, token/<address>, tokens, "
                           f"tokens/page/<k>, content/<cid>, state")

    # ---- helpers -----------------------------------------------------------------------

    @staticmethod
    def _token(st: MarketState, token: str) -> dict[str, str]:
        """Where every unit of `token` is: deposited = balances + escrow + withdrawn."""
        deposited, withdrawn = st.ledger.flows(token)
        return {"token": token, "deposited": str(deposited), "withdrawn": str(withdrawn),
                "balances": str(st.ledger.total_balances(token)),
                "escrow": str(st.escrow_total(token))}

    def _job(self, st: MarketState, job_id: int) -> Job:
        job = st.jobs.get(job_id)
        if job is None:
            raise InputRefused(f"no job {job_id}")
        return job

    def _open(self, st: MarketState, job_id: int) -> Job:
        # Refused on the committed job, before the input's copy of it is made: a finished job
        # keeps its whole history, and anyone can name it.
        status = peek_job(st.jobs, job_id).status if job_id in st.jobs else OPEN
        if status != OPEN:
            raise InputRefused(f"job {job_id} is {status}")
        return self._job(st, job_id)

    def _spec(self, job: Job) -> JobSpec:
        return self._specs[job.spec_cid]

    def _round(self, st: MarketState, job_id: int, round_: int) -> tuple[Job, Round, JobSpec]:
        job = self._open(st, job_id)
        if round_ != job.current.index:
            raise InputRefused(f"round {round_} of job {job.id} is not open: the current round "
                               f"is {job.current.index}")
        return job, job.current, self._spec(job)

    @staticmethod
    def _window(meta: Metadata, what: str, start: int, end: int) -> None:
        now = meta.block_timestamp
        if now < start:
            raise InputRefused(f"too early: the {what} window opens at {start} (block time {now})")
        if now >= end:
            raise InputRefused(f"too late: the {what} window closed at {end} (block time {now})")

    def _fetch(self, cid: str, max_size: int, what: str, source: str | None = None) -> bytes:
        """Verified bytes of `cid` from the job's source ("gio" or "inputs"); with no source
        yet (a spec), from the inbox if posted there, else over GIO. Content taken from the
        inbox is released once the input succeeds (a deposit whose job is not opened drops the
        release): the market keeps what it decoded. ContentUnavailable (the source could not
        be asked) is not a verdict and propagates: it never becomes a refusal."""
        try:
            key = str(Cid.parse(cid))
        except Exception as exc:
            raise InputRefused(f"{what} id {quote(cid)} is not a valid CID: {exc}") from None
        use_inbox = source == "inputs" or (source is None and self.inbox.holds(key))
        try:
            if use_inbox:
                data = self.inbox.get(key, max_size=max_size)
                user = self._user  # only its uploader's own use releases it
                self._after_commit.append(lambda: self.inbox.release([key], by=user))
                return data
            if self.content is None:
                raise ContentMissing("this node serves no GIO; post the content through "
                                     "inputs (putContent)", key)
            return self.content.get(key, max_size=max_size)
        except ContentUnavailable:
            raise
        except Exception as exc:
            raise InputRefused(f"{what} {cid} could not be used: {exc}") from None

    def _decode_model(self, data: bytes, spec: JobSpec) -> Model:
        try:
            return decode_model(data, spec.arch, max_bytes=spec.limits.max_model_bytes,
                                max_abs=spec.limits.max_abs_weight)
        except Exception as exc:
            raise InputRefused(f"invalid model: {exc}") from None

    def _decode_shard(self, data: bytes, spec: JobSpec, cid: str, what: str
                      ) -> tuple[np.ndarray, np.ndarray]:
        try:
            return decode_dataset(data, spec.arch, max_samples=spec.limits.max_shard_samples)
        except Exception as exc:
            raise InputRefused(f"invalid {what} {cid}: {exc}") from None

    def _forget_unused(self) -> None:
        """Keep only what open jobs still need: their global models, this round's updates and
        shards. Memory stays bounded by the open jobs' current rounds, however long the run."""
        keep_models: set[str] = set()
        keep_shards: set[str] = set()
        for job_id in self.state.open_jobs():
            job = self.state.jobs[job_id]
            keep_models.add(job.global_model_hash)
            keep_models.update(s.model_hash for s in job.current.reveals.values())
            if job.current.validation_cid:
                keep_shards.add(job.current.validation_cid)
            public = self._spec(job).public_validation
            if public is not None:
                keep_shards.add(public)
        self._models = {h: m for h, m in self._models.items() if h in keep_models}
        self._shards = {c: s for c, s in self._shards.items() if c in keep_shards}


def _publish(model: Model, spec: JobSpec) -> tuple[bytes, str, str]:
    """A global model as it leaves the machine: canonical bytes, content id, keccak."""
    data = encode_model(model, spec.arch)
    return data, str(unixfs_chunk(data)[0]), _hex(keccak(data))


def _page(keys: Collection[Any], page: int) -> list[Any]:
    """Page `page` (p.PAGE a page) of `keys` in their own order (tokens: first deposit; no sort
    of every token, a free query): O(page index), and [] past the end for any 20-digit page
    (islice's bound is sys.maxsize)."""
    start = page * p.PAGE
    return list(itertools.islice(keys, start, start + p.PAGE)) if start < len(keys) else []


def _address(text: str) -> str:
    """A query's account: 0x and 40 hex digits, lowercased."""
    acct = text.lower()
    if not (len(acct) == 42 and acct.startswith("0x") and acct.isascii()
            and all(c in "0123456789abcdef" for c in acct[2:])):
        raise InputRefused(f"{quote(text)} is not an address (0x and 40 hex digits)")
    return acct


def _int(text: str) -> int:
    """A query's decimal number: ASCII digits only (str.isdigit also takes other scripts' digits),
    at most 20 of them (uint64)."""
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        raise InputRefused(f"{quote(text)} is not a number (ASCII digits, at most 20)")
    return int(text)



