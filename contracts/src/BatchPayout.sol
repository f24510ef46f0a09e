// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @title BatchPayout: pays many accounts in one Cartesi DelegateCallVoucher.
/// @notice The Tributary backend emits `DelegateCallVoucher(BatchPayout, pay(token, entries))`;
/// the Application runs this code with its own balance (delegatecall), so one output, one proof
/// and one transaction pay every trainer with a balance.
///
/// A payee that cannot be paid (a contract that reverts, runs out of its gas allowance, or a
/// token that refuses the transfer) never blocks the others: its amount is deposited back into
/// the same Application through Cartesi's own portal (EtherPortal / ERC20Portal) with
/// `execLayerData = payoutReturned(payee)`. The portal turns that into an ordinary input whose
/// sender is the Application itself, which only this library (run by the Application) can
/// cause; the backend credits the amount back to the payee's in-app balance and reports it.
/// So the backend learns of every failure from an input, with no trust and no storage of our
/// own in the Application, and the money is never lost: it is either paid or back in the app.
///
/// Gas safety: each payee gets at most PAYEE_GAS (plus the 2,300 stipend of a call with value)
/// and its return data is never copied, so a hostile payee costs the executor at most that much;
/// before each payee the library requires enough gas for the payee and for the deposit back
/// (MIN_GAS_LEFT_ETHER / _TOKEN), so an executor cannot starve calls on purpose to push
/// everyone's money back into the app or to make a deposit back fail (the whole voucher reverts
/// instead and can be executed again with more gas). A token transfer gets TOKEN_GAS: a token
/// that needs more is treated as refusing.
///
/// Entries are packed: `bytes32(uint256(uint160(payee)) << 96 | amount)`, amount < 2**96.
/// The library holds nothing and has no state; called directly (not by delegatecall) it can
/// only move what it holds, which is nothing (`pay` is not payable).
contract BatchPayout {
    address public constant ETHER_PORTAL = 0xA632c5c05812c6a6149B7af5C56117d1D2603828;
    address public constant ERC20_PORTAL = 0xACA6586A0Cf05bD831f2501E7B4aea550dA6562D;
    uint256 public constant PAYEE_GAS = 20_000;
    uint256 public constant TOKEN_GAS = 100_000;
    /// Gas the library requires before each payee: the payee's allowance plus the deposit back
    /// (ether), or the transfer, the approval and the deposit back, each capped (tokens).
    uint256 public constant MIN_GAS_LEFT_ETHER = 200_000;
    uint256 public constant MIN_GAS_LEFT_TOKEN = 500_000;

    /// @notice `payoutReturned(address)`: the execLayerData of a returned payout's deposit.
    bytes4 public constant RETURNED = bytes4(keccak256("payoutReturned(address)"));

    event PayoutReturned(address indexed token, address indexed payee, uint256 amount);
    /// Only if the token refuses even the Application's deposit to itself: the amount stays
    /// in the Application (no design could move such a token).
    event PayoutStuck(address indexed token, address indexed payee, uint256 amount);

    error NotEnoughGas(uint256 index, uint256 left);

    /// @notice Pay each entry in `token` (the zero address: ether).
    function pay(address token, bytes32[] calldata entries) external {
        uint256 need = token == address(0) ? MIN_GAS_LEFT_ETHER : MIN_GAS_LEFT_TOKEN;
        for (uint256 i = 0; i < entries.length; i++) {
            if (gasleft() < need) revert NotEnoughGas(i, gasleft());
            address payee = address(uint160(uint256(entries[i]) >> 96));
            uint256 amount = uint256(entries[i]) & ((1 << 96) - 1);
            if (token == address(0)) {
                _payEther(payee, amount);
            } else {
                _payToken(token, payee, amount);
            }
        }
    }

    function _payEther(address payee, uint256 amount) private {
        bool ok;
        assembly {
            ok := call(PAYEE_GAS, payee, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            // EtherPortal.depositEther(app, execLayerData) cannot fail for the Application.
            (bool back,) = ETHER_PORTAL.call{value: amount}(abi.encodeWithSignature(
                "depositEther(address,bytes)", address(this), abi.encodeWithSelector(RETURNED, payee)));
            if (back) {
                emit PayoutReturned(address(0), payee, amount);
            } else {
                emit PayoutStuck(address(0), payee, amount);
            }
        }
    }

    function _payToken(address token, address payee, uint256 amount) private {
        if (_tokenCall(token, abi.encodeWithSelector(0xa9059cbb, payee, amount))) return;
        // approve(portal, amount), then the portal pulls it from the Application into itself.
        if (_tokenCall(token, abi.encodeWithSelector(0x095ea7b3, ERC20_PORTAL, amount))) {
            (bool ok,) = ERC20_PORTAL.call{gas: TOKEN_GAS * 2}(abi.encodeWithSignature(
                "depositERC20Tokens(address,address,uint256,bytes)", token, address(this), amount,
                abi.encodeWithSelector(RETURNED, payee)));
            if (ok) {
                emit PayoutReturned(token, payee, amount);
                return;
            }
        }
        emit PayoutStuck(token, payee, amount);
    }

    /// A token call that succeeded: no revert, and either no return data (old tokens) from a
    /// contract, or a return value of true (as OpenZeppelin's SafeERC20 judges it).
    function _tokenCall(address token, bytes memory data) private returns (bool ok) {
        assembly {
            ok := call(TOKEN_GAS, token, 0, add(data, 0x20), mload(data), 0, 0x20)
            switch returndatasize()
            case 0 { ok := and(ok, gt(extcodesize(token), 0)) }
            default { ok := and(ok, and(gt(returndatasize(), 31), eq(mload(0), 1))) }
        }
    }
}
