// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @title OnChainAggregation: the OmniLytics-style baseline (aggregation done by the contract).
/// @notice Benchmark baseline only. Every trainer submits its whole quantized model update
/// (int32 fixed point) as calldata and the contract adds it, coordinate by coordinate, into a
/// running sum kept in storage; the average is sum / count. This is what Tributary avoids by
/// sending only content ids and aggregating inside the Cartesi machine; the gas of
/// `submitUpdate` against the model size is the comparison.
/// @dev The sums are int64, which Solidity packs four to a storage slot. A sum of at most
/// 2**32 - 1 int32 values cannot overflow int64 (|sum| < 2**63), and maxUpdates is a uint32.
contract OnChainAggregation {
    struct Job {
        address owner;
        uint32 dim;
        uint32 maxUpdates;
        uint32 count;
    }

    uint256 public nextJobId;
    mapping(uint256 => Job) public jobs;
    mapping(uint256 => int64[]) internal sums;
    mapping(uint256 => mapping(address => bool)) public submitted;

    event JobCreated(uint256 indexed jobId, address indexed owner, uint32 dim, uint32 maxUpdates);
    event UpdateSubmitted(uint256 indexed jobId, address indexed trainer, uint32 count);

    error UnknownJob(uint256 jobId);
    error BadDimension(uint256 expected, uint256 got);
    error AlreadySubmitted(uint256 jobId, address trainer);
    error JobFull(uint256 jobId);
    error BadParameters();

    /// @notice Open a job for models of `dim` parameters that takes up to `maxUpdates` updates.
    function createJob(uint32 dim, uint32 maxUpdates) external returns (uint256 jobId) {
        if (dim == 0 || maxUpdates == 0) revert BadParameters();
        jobId = nextJobId++;
        jobs[jobId] = Job(msg.sender, dim, maxUpdates, 0);
        emit JobCreated(jobId, msg.sender, dim, maxUpdates);
    }

    /// @notice Add one trainer's quantized update into the job's running sum.
    function submitUpdate(uint256 jobId, int32[] calldata weights) external {
        Job storage job = jobs[jobId];
        if (job.dim == 0) revert UnknownJob(jobId);
        if (weights.length != job.dim) revert BadDimension(job.dim, weights.length);
        if (submitted[jobId][msg.sender]) revert AlreadySubmitted(jobId, msg.sender);
        if (job.count >= job.maxUpdates) revert JobFull(jobId);
        submitted[jobId][msg.sender] = true;
        int64[] storage s = sums[jobId];
        uint256 n = weights.length;
        if (s.length == 0) {
            for (uint256 i = 0; i < n; ++i) {
                s.push(int64(weights[i]));
            }
        } else {
            for (uint256 i = 0; i < n; ++i) {
                s[i] += int64(weights[i]);
            }
        }
        job.count += 1;
        emit UpdateSubmitted(jobId, msg.sender, job.count);
    }

    /// @notice The coordinate-wise sum of every update so far.
    function getSum(uint256 jobId) external view returns (int64[] memory) {
        return sums[jobId];
    }

    /// @notice The coordinate-wise mean, rounded toward zero (Solidity integer division).
    function getAverage(uint256 jobId) external view returns (int64[] memory avg) {
        Job storage job = jobs[jobId];
        if (job.count == 0) revert UnknownJob(jobId);
        int64[] storage s = sums[jobId];
        avg = new int64[](s.length);
        int64 c = int64(uint64(job.count));
        for (uint256 i = 0; i < s.length; ++i) {
            avg[i] = s[i] / c;
        }
    }
}
