import Dispatch
import Foundation
import Kiln
import KilnMPI

/// `kiln bench MODEL --mode training --distributed` under mpirun: what data-parallel training costs per step.
/// Every iteration times, in turn and on every rank at once (a barrier before each), one training step
/// without any exchange (but a barrier at its end, so that waiting for the slowest rank is not counted as
/// the all-reduce's), one with the gradient buckets all-reduced after backward, one with each bucket
/// all-reduced while backward goes on, and the all-reduce alone: bucketed (one call per bucket) and one call
/// per parameter. Medians over the iterations, as rank 0 measured them.
struct DistributedBench {
    var setup: BenchSetup
    var options: CompileOptions
    var iterations: Int
    var warmup: Int

    func run(comm: MPICommunicator) throws {
        let exe = try Compiler.compile(setup.roots, .training, options: options)
        let solver = Adam(alpha: 1e-3)
        solver.setParameters(setup.parameters)
        try comm.checkSameModel(setup.parameters)
        try comm.bcastTrainingState(parameters: setup.parameters, solvers: [solver])
        let buckets = exe.gradientBucketValues
        let grads = setup.parameters.map { $0.variable.grad }
        let mean = 1 / Float(comm.size)
        let overlapped = OverlappedBucketReduction(comm: comm)
        var phases: [(forward: Double, backward: Double)] = []

        func reduceBuckets() throws {
            for b in buckets { try comm.startAllReduce(b) }
            try comm.finishAllReduces()
        }
        func finish() throws {
            try comm.finishAllReduces()
            for b in buckets { for k in b.indices { b[k] *= mean } }
            solver.update()
        }
        let kinds: [(name: String, body: () throws -> Void)] = [
            // Ends with a barrier: a synchronous step waits for the slowest rank whatever it exchanges, and that
            // wait is not the all-reduce's.
            ("compute", {
                solver.zeroGrad()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try exe.run(.forward)
                let t1 = DispatchTime.now().uptimeNanoseconds
                try exe.run(.backward)
                phases.append((Double(t1 - t0) / 1e6, Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e6))
                solver.update()
                try comm.barrier()
            }),
            ("no_overlap", { solver.zeroGrad(); try exe.run(.forward); try exe.run(.backward); try reduceBuckets(); try finish() }),
            ("overlap", { solver.zeroGrad(); try exe.run(.forward); try exe.run(.backward, buckets: overlapped); try finish() }),
            ("bucketed", { try reduceBuckets() }),
            ("per_parameter", { try comm.allReduce(grads, division: false, inplace: true) }),
        ]
        var times = [[Double]](repeating: [], count: kinds.count)
        for i in 0..<(warmup + iterations) {
            for (k, kind) in kinds.enumerated() {
                try comm.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                try kind.body()
                if i >= warmup { times[k].append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
            }
        }
        let m = times.map { BenchCommand.median($0.sorted()) }
        let (compute, noOverlap, overlap, bucketed, perParameter) = (m[0], m[1], m[2], m[3], m[4])
        let gradientBytes = grads.reduce(0) { $0 + $1.type.byteCount }
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        print("ranks: \(comm.size)")
        print("batch_size_per_rank: \(setup.batchSize)")
        print("parameters: \(grads.count)")
        print("gradient_bytes: \(gradientBytes)")
        print("gradient_buckets: \(buckets.count)")
        print("bucket_limit_bytes: \(options.gradientBucketBytes ?? 0)")
        print("iterations: \(iterations)")
        let measured = phases.suffix(iterations)
        print("forward_ms: \(ms(BenchCommand.median(measured.map(\.forward).sorted())))")
        print("backward_ms: \(ms(BenchCommand.median(measured.map(\.backward).sorted())))")
        print("step_ms_compute_only: \(ms(compute))")
        print("step_ms_no_overlap: \(ms(noOverlap))")
        print("step_ms_overlap: \(ms(overlap))")
        print("allreduce_ms_bucketed: \(ms(bucketed))")
        print("allreduce_ms_per_parameter: \(ms(perParameter))")
        print("allreduce_share_no_overlap: \(String(format: "%.3f", max(0, noOverlap - compute) / noOverlap))")
        print("allreduce_share_overlap: \(String(format: "%.3f", max(0, overlap - compute) / overlap))")
    }
}
