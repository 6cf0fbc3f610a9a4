import Foundation
import Kiln
import Testing
@testable import KilnGraphviz
#if canImport(Glibc)
import Glibc
#endif

extension ViewerTests {
/// Proves that rendering starts no process: the rendering runs on a thread that the kernel forbids to
/// create processes or exec programs (a seccomp filter installed on that thread only: fork, vfork,
/// clone without CLONE_THREAD, execve and execveat fail with EPERM; clone3 answers ENOSYS so glibc falls back
/// to clone, whose flags the filter can inspect). The same thread first shows that it really cannot spawn
/// `/bin/true`; then it lays out and renders graphs and a plan in every format and checks the outputs.
/// A filter on one thread leaves the rest of the test process (and parallel tests) untouched.
@Suite struct NoChildProcessTests {
#if os(Linux) && arch(x86_64)
    struct SockFilter { var code: UInt16; var jt: UInt8; var jf: UInt8; var k: UInt32 }
    struct SockFprog { var len: UInt16; var filter: UnsafeMutablePointer<SockFilter>? }

    /// Installs the no-process filter on the calling thread. Returns false when the kernel refuses.
    static func forbidProcessCreation() -> Bool {
        typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "prctl") else { return false }
        let prctl = unsafeBitCast(sym, to: Prctl.self)
        let ld: UInt16 = 0x20, jeq: UInt16 = 0x15, jset: UInt16 = 0x45, ret: UInt16 = 0x06
        let allow: UInt32 = 0x7fff_0000, eperm: UInt32 = 0x0005_0000 | 1, enosys: UInt32 = 0x0005_0000 | 38
        // index: 11 = allow, 12 = EPERM, 13 = ENOSYS; jumps are relative to the next instruction.
        var program: [SockFilter] = [
            SockFilter(code: ld, jt: 0, jf: 0, k: 4),                 // 0: arch
            SockFilter(code: jeq, jt: 0, jf: 9, k: 0xC000_003E),      // 1: x86-64, else allow
            SockFilter(code: ld, jt: 0, jf: 0, k: 0),                 // 2: syscall number
            SockFilter(code: jeq, jt: 8, jf: 0, k: 57),               // 3: fork
            SockFilter(code: jeq, jt: 7, jf: 0, k: 58),               // 4: vfork
            SockFilter(code: jeq, jt: 6, jf: 0, k: 59),               // 5: execve
            SockFilter(code: jeq, jt: 5, jf: 0, k: 322),              // 6: execveat
            SockFilter(code: jeq, jt: 5, jf: 0, k: 435),              // 7: clone3 -> ENOSYS
            SockFilter(code: jeq, jt: 0, jf: 2, k: 56),               // 8: clone, else allow
            SockFilter(code: ld, jt: 0, jf: 0, k: 16),                // 9: clone flags (low word)
            SockFilter(code: jset, jt: 0, jf: 1, k: 0x0001_0000),     // 10: CLONE_THREAD -> allow, else EPERM
            SockFilter(code: ret, jt: 0, jf: 0, k: allow),            // 11
            SockFilter(code: ret, jt: 0, jf: 0, k: eperm),            // 12
            SockFilter(code: ret, jt: 0, jf: 0, k: enosys),           // 13
        ]
        return program.withUnsafeMutableBufferPointer { p in
            var prog = SockFprog(len: UInt16(p.count), filter: p.baseAddress)
            guard prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) == 0 else { return false }
            return withUnsafeMutablePointer(to: &prog) {
                prctl(22 /* PR_SET_SECCOMP */, 2 /* SECCOMP_MODE_FILTER */, UInt(bitPattern: Int(bitPattern: $0)), 0, 0) == 0
            }
        }
    }

    /// posix_spawn of /bin/true: true when a process was started.
    static func canSpawn() -> Bool {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for a in argv { free(a) } }
        let rc = posix_spawn(&pid, "/bin/true", nil, nil, argv, environ)
        if rc == 0 { var status: Int32 = 0; waitpid(pid, &status, 0) }
        return rc == 0
    }

    final class Results: @unchecked Sendable {
        var filtered = false, spawnBlocked = false, outputs: [String: [UInt8]] = [:], error: String?
        /// The graph drawn, handed to the rendering thread (which alone uses it until it signals).
        var graph: Variable?
    }

    @Test func renderingStartsNoProcess() throws {
        #expect(Self.canSpawn(), "control: this process can start /bin/true on an ordinary thread")
        let (y, _) = try Fixture.residualLike()
        let plan = try Compiler.plan([y], .training)
        let results = Results()
        results.graph = y
        let done = DispatchSemaphore(value: 0)
        let pngPath = Fixture.tempPath("nochild.png")
        let thread = Thread {
            defer { done.signal() }
            results.filtered = Self.forbidProcessCreation()
            // Without the filter nothing is rendered; the test then fails on `filtered` below.
            if results.filtered {
                results.spawnBlocked = !Self.canSpawn()
                do {
                    let y = try #require(results.graph)
                    let g = try SimpleGraph(verbose: true).createGraphvizDigraph(y)
                    for f in ["png", "svg", "pdf", "dot"] { results.outputs[f] = try g.renderData(format: f) }
                    try g.render(to: pngPath)
                    results.outputs["file"] = Fixture.bytes(pngPath)
                    results.outputs["plan"] = try PlanPicture.digraph(plan).renderData(format: "svg")
                    var compact = SimpleGraph(verbose: true)
                    compact.largeGraphFunctions = 2                 // Kiln's own layout, pinned with nop2
                    let large = try compact.createGraphvizDigraph(y)
                    for f in ["png", "svg"] { results.outputs["large-" + f] = try large.renderData(format: f) }
                } catch { results.error = "\(error)" }
            }
        }
        thread.start()
        done.wait()
        try #require(results.filtered, "the kernel refused the seccomp filter")
        #expect(results.spawnBlocked, "the filter must stop posix_spawn on the rendering thread")
        #expect(results.error == nil)
        #expect(Fixture.isPNG(results.outputs["png"] ?? []))
        #expect(Fixture.isPNG(results.outputs["file"] ?? []))
        #expect(Fixture.isPDF(results.outputs["pdf"] ?? []))
        #expect(Fixture.svgElements(results.outputs["svg"] ?? []) != nil)
        #expect(String(decoding: results.outputs["dot"] ?? [], as: UTF8.self).hasPrefix("digraph"))
        #expect((Fixture.svgNodeTitles(results.outputs["plan"] ?? []) ?? []).contains { $0.hasPrefix("buf") })
        #expect(Fixture.isPNG(results.outputs["large-png"] ?? []))
        #expect((Fixture.svgNodeTitles(results.outputs["large-svg"] ?? []) ?? []).count == 9)
        #expect(Self.canSpawn(), "other threads are not affected")
    }
#endif
}
}
