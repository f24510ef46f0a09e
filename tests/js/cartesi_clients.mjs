// Drives a node with Cartesi's own, unmodified npm clients (@cartesi/rpc and @cartesi/viem, pinned
// in package.json) and prints what they got as one JSON document on stdout, for
// tests/test_cartesi_clients.py to check (raw results are validated there against the OpenRPC schema).
//
// Usage: node tests/js/cartesi_clients.mjs '<json config>'
//   config: {rpc, anvil, app, name, key, notice, voucher, epoch, input, report, l1}
//   rpc/anvil: URLs of the node's /rpc and the chain's JSON-RPC (or a gateway's /rpc and /anvil);
//   app/name: the application's address and name; key: a funded private key (0x...);
//   notice/voucher: indices of a proven notice and of an unexecuted, funded voucher;
//   epoch/input/report: indices that exist; l1: also validate and execute outputs on chain.
import { createClient } from "@cartesi/rpc";
import {
    createCartesiPublicClient,
    publicActionsL1,
    walletActionsL1,
} from "@cartesi/viem";
import { createPublicClient, createWalletClient, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const cfg = JSON.parse(process.argv[2]);
const out = { raw: {}, viem: {}, l1: {} };

// BigInt, Date and Error values as JSON
const plain = (value) =>
    JSON.parse(
        JSON.stringify(value, (_k, v) =>
            typeof v === "bigint" ? `bigint:${v.toString()}` : v,
        ),
    );

const attempt = async (fn) => {
    try {
        return { ok: plain(await fn()) };
    } catch (e) {
        return { error: { code: e.code ?? null, message: String(e.message ?? e).slice(0, 500) } };
    }
};

// --- @cartesi/rpc: every method it knows, as an application would call it -----------------------
const rpc = createClient({ uri: cfg.rpc });
const app = { application: cfg.app };
const byName = { application: cfg.name };
const zeroAddr = `0x${"00".repeat(20)}`;
const zeroHash = `0x${"00".repeat(32)}`;
const calls = {
    cartesi_listApplications: {},
    cartesi_getApplication: app,
    cartesi_getApplication_byName: byName,
    cartesi_listEpochs: app,
    cartesi_getEpoch: { ...app, epoch_index: cfg.epoch },
    cartesi_getLastAcceptedEpochIndex: app,
    cartesi_listInputs: app,
    cartesi_getInput: { ...app, input_index: cfg.input },
    cartesi_getProcessedInputCount: app,
    cartesi_listOutputs: app,
    cartesi_getOutput: { ...app, output_index: cfg.voucher },
    cartesi_listReports: app,
    cartesi_getReport: { ...app, report_index: cfg.report },
    cartesi_listTournaments: app,
    cartesi_getTournament: { ...app, address: zeroAddr },
    cartesi_listCommitments: app,
    cartesi_getCommitment: { ...app, epoch_index: "0x0", tournament_address: zeroAddr, commitment: zeroHash },
    cartesi_listMatches: app,
    cartesi_getMatch: { ...app, epoch_index: "0x0", tournament_address: zeroAddr, id_hash: zeroHash },
    cartesi_listMatchAdvances: { ...app, epoch_index: "0x0", tournament_address: zeroAddr, id_hash: zeroHash },
    cartesi_getMatchAdvanced: {
        ...app, epoch_index: "0x0", tournament_address: zeroAddr, id_hash: zeroHash, parent: zeroHash,
    },
    cartesi_getChainId: undefined,
    cartesi_getNodeVersion: undefined,
    // newer than the node release we follow (rollups 2.2.0 has no withdrawals): -32601 expected
    cartesi_listWithdrawals: app,
};
for (const [key, params] of Object.entries(calls)) {
    const method = key.replace(/_byName$/, "");
    out.raw[key] = await attempt(() => rpc.request(method, params));
}

// --- @cartesi/viem: the L2 (node) actions -------------------------------------------------------
const l2 = createCartesiPublicClient({ transport: http(cfg.rpc) });
const a = cfg.app;
const big = (hex) => BigInt(hex);
const viemCalls = {
    getChainId: () => l2.getChainId(),
    getNodeVersion: () => l2.getNodeVersion(),
    listApplications: () => l2.listApplications(),
    getApplication: () => l2.getApplication({ application: a }),
    listEpochs: () => l2.listEpochs({ application: a }),
    getEpoch: () => l2.getEpoch({ application: a, epochIndex: big(cfg.epoch) }),
    getLastAcceptedEpochIndex: () => l2.getLastAcceptedEpochIndex({ application: a }),
    listInputs: () => l2.listInputs({ application: a }),
    listInputsByEpoch: () => l2.listInputs({ application: a, epochIndex: big(cfg.epoch) }),
    getInput: () => l2.getInput({ application: a, inputIndex: big(cfg.input) }),
    getProcessedInputCount: () => l2.getProcessedInputCount({ application: a }),
    listOutputs: () => l2.listOutputs({ application: a }),
    listNotices: () => l2.listOutputs({ application: a, outputType: "Notice" }),
    listVouchers: () => l2.listOutputs({ application: a, outputType: "Voucher" }),
    listOutputsByEpoch: () => l2.listOutputs({ application: a, epochIndex: big(cfg.epoch), limit: 2 }),
    getOutput: () => l2.getOutput({ application: a, outputIndex: big(cfg.voucher) }),
    listReports: () => l2.listReports({ application: a }),
    getReport: () => l2.getReport({ application: a, reportIndex: big(cfg.report) }),
    listTournaments: () => l2.listTournaments({ application: a }),
    listCommitments: () => l2.listCommitments({ application: a }),
    listMatches: () => l2.listMatches({ application: a }),
    listMatchAdvances: () =>
        l2.listMatchAdvances({ application: a, epochIndex: 0n, tournamentAddress: zeroAddr, idHash: zeroHash }),
};
for (const [key, fn] of Object.entries(viemCalls)) {
    out.viem[key] = await attempt(fn);
}

// --- @cartesi/viem: the L1 side, with proofs from the node (when cfg.l1) --------------------------
const l1Side = async () => {
    const chainId = Number(BigInt((await rpc.request("cartesi_getChainId")).data));
    const chain = defineChain({
        id: chainId,
        name: "devnet",
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [cfg.anvil] } },
    });
    const account = privateKeyToAccount(cfg.key);
    const l1 = createPublicClient({ chain, transport: http(cfg.anvil) }).extend(publicActionsL1());
    const wallet = createWalletClient({ account, chain, transport: http(cfg.anvil) }).extend(walletActionsL1());

    const notice = await l2.getOutput({ application: a, outputIndex: big(cfg.notice) });
    const voucher = await l2.getOutput({ application: a, outputIndex: big(cfg.voucher) });
    out.l1.validateNotice = await attempt(() => l1.validateOutput({ application: a, output: notice }));
    const forged = { ...notice, rawData: `${notice.rawData.slice(0, -2)}${notice.rawData.endsWith("00") ? "01" : "00"}` };
    out.l1.validateForged = await attempt(() => l1.validateOutput({ application: a, output: forged }));
    out.l1.validateVoucher = await attempt(() => l1.validateOutput({ application: a, output: voucher }));
    out.l1.execute = await attempt(async () => {
        const hash = await wallet.executeOutput({ application: a, output: voucher, account });
        const receipt = await l1.waitForTransactionReceipt({ hash });
        return { hash, status: receipt.status };
    });
    out.l1.executeAgain = await attempt(() => wallet.executeOutput({ application: a, output: voucher, account }));
    out.l1.executeNotice = await attempt(() => wallet.executeOutput({ application: a, output: notice, account }));
};
if (cfg.l1) {
    await l1Side();
}

// no process.exit(): a pipe's stdout is written asynchronously, exiting would cut the document
process.stdout.write(`${JSON.stringify(out)}\n`);
