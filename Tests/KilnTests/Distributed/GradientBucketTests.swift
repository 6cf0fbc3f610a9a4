import Foundation
import Testing
@testable import Kiln

/// The gradient buckets of distributed training plans (`GradientBuckets`, `Executable.run(buckets:)`) and
/// the updater's three ways of reducing gradients, in one process: `FakeCommunicator` sums over identical
/// ranks, so every way must give the same parameters, bit for bit.
struct GradientBucketTests {
    /// LeNet's training plan with gradients in buckets of at most `bytes`.
    static func lenetPlan(bucketBytes: Int?) throws -> (Zoo.Model, Executable) {
        GlobalRandom.seed(7)
        let m = try Zoo.lenet.build(batchSize: 4, training: true)
        fillImages(m)
        var options = CompileOptions()
        options.gradientBucketBytes = bucketBytes
        return (m, try Compiler.compile([m.loss], .training, options: options))
    }

    @Test func bucketsHoldEveryWrittenGradientOnceInTheOrderBackwardFinishesThem() throws {
        try Parameters.isolated {
            let limit = 8 << 10
            let (_, exe) = try Self.lenetPlan(bucketBytes: limit)
            let plan = exe.plan
            let buckets = plan.gradientBuckets
            #expect(buckets.count > 2)
            // Last writer of each parameter gradient, derived from the steps.
            var last: [Int: Int] = [:]
            for (i, s) in plan.steps.enumerated() {
                for b in s.outputs where plan.buffers[b].kind == .parameterGradient { last[b] = i }
            }
            #expect(Set(buckets.flatMap(\.buffers)) == Set(last.keys))
            #expect(buckets.flatMap(\.buffers).count == last.count)
            var region = 0
            for (k, bucket) in buckets.enumerated() {
                #expect(bucket.offset == region)
                region += bucket.bytes
                #expect(bucket.bytes <= limit || bucket.buffers.count == 1)
                #expect(bucket.readyAfterStep == bucket.buffers.map { last[$0]! }.max())
                var at = 0
                for (b, off) in zip(bucket.buffers, bucket.offsets) {
                    #expect(off == at && off % Plan.alignment == 0)
                    at += plan.buffers[b].bytes
                }
                #expect(at == bucket.bytes)
                if k > 0 { #expect(bucket.readyAfterStep >= buckets[k - 1].readyAfterStep) }
                // Greedy packing: the next bucket's first gradient did not fit in this one.
                if k + 1 < buckets.count {
                    #expect(bucket.bytes + plan.buffers[buckets[k + 1].buffers[0]].bytes > limit)
                }
            }
            try plan.verify()
            // A bucket declared ready before its last gradient is written would race with that write.
            var early = plan
            early.gradientBuckets[1].readyAfterStep = early.gradientBuckets[1].readyAfterStep - 1
            #expect(throws: KilnError.self) { try early.verify() }
            var twice = plan
            twice.gradientBuckets[0].buffers[0] = twice.gradientBuckets[1].buffers[0]
            #expect(throws: KilnError.self) { try twice.verify() }
            let dump = plan.dump()
            #expect(dump.contains("gradient buckets   \(buckets.count) "))
            #expect(dump.contains("all-reduce bucket 0 starts"))
            // Without the option (or for inference) there are none, and the dump says nothing of them.
            let (_, plain) = try Self.lenetPlan(bucketBytes: nil)
            #expect(plain.plan.gradientBuckets.isEmpty)
            #expect(!plain.plan.dump().contains("bucket"))
        }
    }

    /// Records what backward announces: each bucket's values when announced, and the steps after.
    final class Recorder: GradientBucketObserver {
        var announced: [Int: [Float]] = [:]
        var stepsAfterFirst = 0
        func bucketReady(_ index: Int, _ values: UnsafeMutableBufferPointer<Float>) throws {
            announced[index] = Array(values)
        }
        func backwardStepDone() throws { stepsAfterFirst += 1 }
    }

    @Test func eachBucketIsFinalWhenBackwardAnnouncesItAndTheGradientsLiveInIt() throws {
        try Parameters.isolated {
            let (m, exe) = try Self.lenetPlan(bucketBytes: 8 << 10)
            let params = m.network.getParameters(gradOnly: true)
            let region = exe.gradientBucketValues
            // Every parameter's .g is a view into its bucket.
            for (k, bucket) in exe.plan.gradientBuckets.enumerated() {
                for (b, off) in zip(bucket.buffers, bucket.offsets) {
                    let name = exe.plan.buffers[b].name
                    let owner = params.first { name.contains($0.name) }
                    #expect(owner != nil, "no parameter for \(name)")
                    if let v = owner?.variable {
                        #expect(v.grad.raw == UnsafeMutableRawPointer(region[k].baseAddress!) + off)
                    }
                }
            }
            let recorder = Recorder()
            for v in params { v.variable.zeroGrad() }
            try exe.run(.forward)
            try exe.run(.backward, seed: 1, buckets: recorder)
            #expect(recorder.announced.count == region.count)
            for k in region.indices { #expect(recorder.announced[k] == Array(region[k]), "bucket \(k) changed after it was announced") }
            #expect(recorder.stepsAfterFirst > 0, "no backward step ran while a bucket could be reducing")
            #expect(params.allSatisfy { $0.variable.g.contains { $0 != 0 } })
        }
    }

    /// Trains LeNet for 3 updates with Adam and a two-rank fake communicator, reducing as asked, and returns
    /// the parameters and the communicator.
    static func train(bucketBytes: Int?, overlap: Bool) throws -> ([[Float]], FakeCommunicator) {
        try Parameters.isolated {
            GlobalRandom.seed(11)
            let m = try Zoo.lenet.build(batchSize: 4, training: true)
            let solver = Adam(alpha: 1e-2)
            let params = m.network.getParameters(gradOnly: true)
            solver.setParameters(params)
            let comm = FakeCommunicator(workers: 2)
            var k = 0
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: {
                k += 1
                fillImages(m, seed: UInt64(k))
            }, comm: comm)
            u.gradientBucketBytes = bucketBytes
            u.overlap = overlap
            u.division = true
            for i in 0..<3 { try u.update(i) }
            return (params.map { $0.variable.d }, comm)
        }
    }

    @Test func bucketedOverlappedAndPerParameterReductionsTrainTheSameParameters() throws {
        let (perParameter, c0) = try Self.train(bucketBytes: nil, overlap: true)
        let (bucketed, c1) = try Self.train(bucketBytes: 8 << 10, overlap: false)
        let (overlapped, c2) = try Self.train(bucketBytes: 8 << 10, overlap: true)
        #expect(c0.calls.count == 3 && c0.bucketStarts == 0)
        #expect(c1.calls.isEmpty && c1.bucketStarts > 3)
        #expect(c2.calls.isEmpty && c2.bucketStarts == c1.bucketStarts)
        #expect(bucketed == perParameter)
        #expect(overlapped == perParameter)
        // A single process (no communicator) takes the same steps: the mean of identical ranks.
        let single: [[Float]] = try Parameters.isolated {
            GlobalRandom.seed(11)
            let m = try Zoo.lenet.build(batchSize: 4, training: true)
            let solver = Adam(alpha: 1e-2)
            let params = m.network.getParameters(gradOnly: true)
            solver.setParameters(params)
            var k = 0
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: { k += 1; fillImages(m, seed: UInt64(k)) })
            for i in 0..<3 { try u.update(i) }
            return params.map { $0.variable.d }
        }
        #expect(single == perParameter)
    }
}

/// Deterministic images and labels for a built zoo model.
func fillImages(_ m: Zoo.Model, seed: UInt64 = 1) {
    var s = seed &* 0x9E37_79B9_7F4A_7C15
    for i in 0..<m.input.size {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        m.input.data.floats[i] = Float(s >> 40) / Float(1 << 24)
    }
    for i in 0..<m.label.size {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        m.label.data.int32s[i] = Int32((s >> 33) % 10)
    }
}
