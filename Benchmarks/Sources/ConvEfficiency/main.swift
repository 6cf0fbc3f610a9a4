// Each convolution product of the zoo against one cblas_sgemm with the whole layer's M, N, K, measured
// alternately in one process: conv, sgemm, conv, sgemm, ... A shared machine's load drifts over seconds, so
// separate benchmark runs (as in `make bench --target Kernels`) can move a ratio by 0.3; alternating rounds
// expose both sides to the same drift, and the ratio of their medians is what the 75% criterion reads.
//
// Usage: ConvEfficiency [--rounds N] [--filter SUBSTRING]   (1 thread; pin with `taskset -c 0`)
import BenchSupport
import Dispatch
import Foundation
import Kiln

struct Case {
    var layer: ConvLayer
    var pass: String
    var conv: () throws -> Void
    var sgemm: () -> Void
}

func buffers(_ sizes: [Int]) -> [UnsafeMutablePointer<Float>] {
    sizes.map { size in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: size)
        for i in 0..<size { p[i] = Float(i % 7) * 0.1 - 0.3 }
        return p
    }
}

func cases(_ l: ConvLayer) throws -> [Case] {
    func graph(xGrad: Bool, wGrad: Bool) throws -> (y: Variable, exe: Executable) {
        let x = try KilnBench.variable([l.batch, l.channels, l.height, l.width], needGrad: xGrad)
        let w = try KilnBench.variable([l.outMaps, l.channels, l.kernel, l.kernel], needGrad: wGrad)
        let b = l.bias ? try KilnBench.variable([l.outMaps], needGrad: wGrad) : nil
        let y = try F.convolution(x, w, b, pad: [l.pad, l.pad], stride: [l.stride, l.stride])
        let exe = try Compiler.compile(y, xGrad || wGrad ? .training : .inference)
        return (y, exe)
    }
    let (m, n, k) = (l.m, l.n * l.batch, l.k)
    var result: [Case] = []
    let forward = try graph(xGrad: false, wGrad: false)
    let pf = buffers([m * k, k * n, m * n])
    result.append(Case(layer: l, pass: "forward", conv: { try forward.exe.run() },
                       sgemm: { Gemm.sgemm(m: m, n: n, k: k, a: pf[0], b: pf[1], c: pf[2]) }))
    // The zoo's first layers (LeNet's conv1, ResNet-20's stem) never compute a data gradient in training,
    // but the product is measured for every layer all the same.
    for (pass, xGrad) in [("backward-data", true), ("backward-weights", false)] {
        let g = try graph(xGrad: xGrad, wGrad: !xGrad)
        try g.exe.run(.forward)
        KilnBench.fillUniform(g.y.grad)
        let p = xGrad ? buffers([m * k, m * n, k * n]) : buffers([m * n, k * n, m * k])
        let sgemm: () -> Void = xGrad
            ? { Gemm.sgemm(transA: true, m: k, n: n, k: m, a: p[0], b: p[1], c: p[2]) }
            : { Gemm.sgemm(transB: true, m: m, n: k, k: n, a: p[0], b: p[1], c: p[2]) }
        result.append(Case(layer: l, pass: pass, conv: { try g.exe.run(.backward, seed: nil) }, sgemm: sgemm))
    }
    return result
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func main() throws {
    var rounds = 31
    var filter = ""
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--rounds": rounds = max(1, Int(args.next() ?? "") ?? rounds)
        case "--filter": filter = args.next() ?? ""
        default:
            FileHandle.standardError.write("usage: ConvEfficiency [--rounds N] [--filter SUBSTRING]\n".data(using: .utf8)!)
            exit(2)
        }
    }
    // Kernels called outside an executable run on one thread (Threads.count is 1 unless Threads.with says more).
    print("conv product vs one sgemm of the whole layer's M, N, K; \(rounds) alternating rounds, 1 thread")
    print("layer                  pass              conv ms  sgemm ms  conv GFLOP/s  sgemm GFLOP/s  ratio")
    var ratios: [Double] = []
    for layer in ConvLayer.zoo {
        for c in try cases(layer) where filter.isEmpty || "\(layer.name) \(c.pass)".contains(filter) {
            try c.conv(); c.sgemm()
            var tc: [Double] = [], ts: [Double] = []
            for _ in 0..<rounds {
                tc.append(try seconds(c.conv))
                ts.append(seconds(c.sgemm))
            }
            let (mc, ms) = (median(tc), median(ts))
            ratios.append(ms / mc)
            let name = layer.name.padding(toLength: 22, withPad: " ", startingAt: 0)
            let pass = c.pass.padding(toLength: 16, withPad: " ", startingAt: 0)
            print(String(format: "%@ %@ %8.3f  %8.3f  %12.1f  %13.1f  %5.2f", name, pass, mc * 1e3, ms * 1e3,
                         layer.flops / mc / 1e9, layer.flops / ms / 1e9, ms / mc))
        }
    }
    if let worst = ratios.min() { print(String(format: "lowest ratio: %.2f", worst)) }
}

do { try main() } catch {
    FileHandle.standardError.write("ConvEfficiency: \(error)\n".data(using: .utf8)!)
    exit(1)
}
