import Benchmark
import Dispatch
import Foundation
import Kiln

/// What every Kiln benchmark needs: threads from the environment, a setup that builds the compiled plan (kept
/// out of the measurement), one timed body per iteration, and derived throughput figures.
///
/// Metrics: wall clock, throughput (iterations/s), malloc counts per iteration (`mallocCountTotal`:
/// must be 0 for plan runs after the first, which the warm-up iteration absorbs; the `baseline: empty
/// iteration` benchmark in Models shows what the framework itself adds), and custom metrics: `peak RSS (MiB)`
/// (VmHWM of the process running this one benchmark — the tool spawns one process per benchmark — so it
/// covers setup, plan, arena and every iteration so far), `MFLOP/s` (kernels with a known FLOP
/// count) and `images/s` (model steps). The framework's own `peakMemoryResident` is deliberately not used: it
/// runs a sampling thread every 5 ms whose allocations would show up in the malloc counts. The custom figures
/// are recorded after `stopMeasurement()`, so recording them never shows up in the malloc counts either.
/// CPU time is left out for the same reason (reading it costs 18 mallocs per iteration); add it with
/// `--metric cpuTotal` when the malloc counts do not matter.
public enum KilnBench {
    /// Threads for Kiln's loops and OpenBLAS: `KILN_BENCH_THREADS` (default 1). Pin the process with
    /// `taskset -c 0` (1 thread) or `taskset -c 0,1` (2) for numbers that compare across runs.
    public static let threads: Int = {
        let t = Int(ProcessInfo.processInfo.environment["KILN_BENCH_THREADS"] ?? "") ?? 1
        return max(1, t)
    }()

    /// Call first in each target's `benchmarks` closure.
    public static func configure() {
        Context.setDefault { $0.threads = threads }
    }

    public static let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal, peakRSS]
    public static let peakRSS = BenchmarkMetric.custom("peak RSS (MiB)", polarity: .prefersSmaller, useScalingFactor: false)
    public static let mflops = BenchmarkMetric.custom("MFLOP/s", polarity: .prefersLarger, useScalingFactor: false)
    public static let imagesPerSecond = BenchmarkMetric.custom("images/s", polarity: .prefersLarger, useScalingFactor: false)

    /// Registers one benchmark. `build` runs in the benchmark's setup (not measured) and returns the body
    /// that one iteration runs. `flops` (per body call) adds MFLOP/s, `images` (per body call) adds images/s.
    public static func register(_ name: String, flops: Double = 0, images: Int = 0,
                                maxDuration: Duration = .seconds(2), maxIterations: Int = 1000,
                                warmupIterations: Int = 1,
                                build: @escaping () throws -> () throws -> Void) {
        let state = State()
        var metrics = metrics
        if flops > 0 { metrics.append(mflops) }
        if images > 0 { metrics.append(imagesPerSecond) }
        let config = Benchmark.Configuration(
            metrics: metrics, warmupIterations: warmupIterations, maxDuration: maxDuration,
            maxIterations: maxIterations)
        Benchmark(name + " [t\(threads)]", configuration: config, closure: { benchmark in
            guard let body = state.body else {
                benchmark.stopMeasurement()
                benchmark.error(state.failure ?? "setup did not run")
                return
            }
            let start = DispatchTime.now().uptimeNanoseconds
            do { try body() } catch {
                benchmark.stopMeasurement()
                benchmark.error("\(error)")
                return
            }
            let ns = Double(DispatchTime.now().uptimeNanoseconds - start)
            benchmark.stopMeasurement()
            benchmark.measurement(peakRSS, peakRSSMiB())
            if flops > 0 { benchmark.measurement(mflops, Int((flops / ns * 1e3).rounded())) }
            if images > 0 { benchmark.measurement(imagesPerSecond, Int((Double(images) / ns * 1e9).rounded())) }
        }, setup: {
            do { state.body = try build() } catch { state.failure = "setup failed: \(error)" }
        }, teardown: {
            state.body = nil
        })
    }

    /// The process's peak resident set so far (VmHWM of /proc/self/status), in MiB rounded up.
    /// Not getrusage's ru_maxrss: the tool starts each benchmark with posix_spawn (vfork semantics), and Linux
    /// carries the spawning tool's high-water mark into the child's ru_maxrss at exec.
    public static func peakRSSMiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") ?? -1
            return kb < 0 ? -1 : (kb + 1023) / 1024
        }
        return -1
    }

    final class State: @unchecked Sendable {
        var body: (() throws -> Void)?
        var failure: String?
    }

    // MARK: Data

    /// Uniform random floats in [low, high) (a fixed-seed LCG: benchmarks need values, not statistics).
    public static func fillUniform(_ a: NDArray, _ low: Float = -1, _ high: Float = 1, seed: UInt64 = 1) {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        let p = a.floats
        let scale = (high - low) / Float(1 << 24)
        for i in 0..<a.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            p[i] = low + Float(s >> 40) * scale
        }
    }

    /// Random class labels in 0..<classes.
    public static func fillLabels(_ a: NDArray, classes: Int, seed: UInt64 = 2) {
        var s = seed
        let p = a.int32s
        for i in 0..<a.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            p[i] = Int32((s >> 33) % UInt64(classes))
        }
    }

    /// A float32 leaf variable filled with random values.
    public static func variable(_ shape: [Int], needGrad: Bool = false, name: String = "",
                                _ low: Float = -1, _ high: Float = 1) throws -> Variable {
        let v = try Variable(shape: shape, needGrad: needGrad, name: name)
        fillUniform(v.data, low, high, seed: UInt64(shape.reduce(7, &*)))
        return v
    }
}

/// The zoo's layer shapes, as Zoo.swift builds them: LeNet at batch 64, ResNet-20 at batch 32.
public struct ConvLayer: Sendable {
    public var name: String
    public var batch: Int, channels: Int, height: Int, width: Int
    public var outMaps: Int, kernel: Int, stride: Int, pad: Int
    public var bias: Bool

    public var outHeight: Int { (height + 2 * pad - kernel) / stride + 1 }
    public var outWidth: Int { (width + 2 * pad - kernel) / stride + 1 }
    /// The GEMM each sample runs (as ConvolutionEngine does, one sample at a time):
    /// forward `M = outMaps, N = outH*outW, K = channels*k*k`.
    public var m: Int { outMaps }
    public var n: Int { outHeight * outWidth }
    public var k: Int { channels * kernel * kernel }
    /// 2*M*N*K per sample, times the batch: forward, backward-data and backward-weights each cost this.
    public var flops: Double { 2 * Double(batch) * Double(m) * Double(n) * Double(k) }
    public var shapeLabel: String {
        "\(batch)x\(channels)x\(height)x\(width) -> \(outMaps) k\(kernel) s\(stride) p\(pad)"
    }

    public static let zoo: [ConvLayer] = [
        ConvLayer(name: "lenet/conv1", batch: 64, channels: 1, height: 28, width: 28, outMaps: 16, kernel: 5, stride: 1, pad: 0, bias: true),
        ConvLayer(name: "lenet/conv2", batch: 64, channels: 16, height: 12, width: 12, outMaps: 16, kernel: 5, stride: 1, pad: 0, bias: true),
        ConvLayer(name: "resnet20/stem", batch: 32, channels: 3, height: 32, width: 32, outMaps: 16, kernel: 3, stride: 1, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage1", batch: 32, channels: 16, height: 32, width: 32, outMaps: 16, kernel: 3, stride: 1, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage2-down", batch: 32, channels: 16, height: 32, width: 32, outMaps: 32, kernel: 3, stride: 2, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage2", batch: 32, channels: 32, height: 16, width: 16, outMaps: 32, kernel: 3, stride: 1, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage2-proj", batch: 32, channels: 16, height: 32, width: 32, outMaps: 32, kernel: 1, stride: 2, pad: 0, bias: false),
        ConvLayer(name: "resnet20/stage3-down", batch: 32, channels: 32, height: 16, width: 16, outMaps: 64, kernel: 3, stride: 2, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage3", batch: 32, channels: 64, height: 8, width: 8, outMaps: 64, kernel: 3, stride: 1, pad: 1, bias: false),
        ConvLayer(name: "resnet20/stage3-proj", batch: 32, channels: 32, height: 16, width: 16, outMaps: 64, kernel: 1, stride: 2, pad: 0, bias: false),
    ]
}
