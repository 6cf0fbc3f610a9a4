import Foundation
import Testing
@testable import Kiln
@testable import KilnTraining

/// Writes `files` (relative path -> text) into a fresh directory and returns it.
private func csvDir(_ files: [String: String]) throws -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("kiln-csv-\(getpid())-\(UUID().uuidString.prefix(8))").path
    for (name, text) in files {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try AtomicFile.write(text, to: path)
    }
    return dir
}

/// The error message of `body`, nil when it does not throw a KilnError.
private func kilnError(_ body: () throws -> Void) -> String? {
    do { try body() } catch let e as KilnError { return e.description } catch { return nil }
    return nil
}

struct CSVDatasetTests {
    @Test func vectorColumnsAndLabels() throws {
        let dir = try csvDir(["data.csv": "x__0,x__1,x__2,y:label\n1,2,3,0\n-4.5,5e-1,+6,1\n7, 8 ,.25,2\n"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try CSVDataSource(path: dir + "/data.csv")
        #expect(s.variables == ["x", "y"])
        #expect(s.labels == [nil, "label"])
        #expect(s.shapes == [[3], [1]])
        #expect(s.size == 3)
        #expect(try s.sample(0) == [[1, 2, 3], [0]])
        #expect(try s.sample(1) == [[-4.5, 0.5, 6], [1]])
        #expect(try s.sample(2) == [[7, 8, 0.25], [2]])
        #expect(throws: KilnError.self) { _ = try s.sample(3) }

        let it = try dataIteratorCSVDataset(path: dir + "/data.csv", batchSize: 2)
        #expect(it.sampleShapes == [[3], [1]])
        #expect(try it.next() == [[1, 2, 3, -4.5, 0.5, 6], [0, 1]])
        #expect(try it.next() == [[7, 8, 0.25, 1, 2, 3], [2, 0]])   // wraps into the next epoch
    }

    @Test func quotedFieldsCommentsBOMAndCRLF() throws {
        // RFC 4180: quoted names and numbers, a quoted comma, doubled quotes and a line break inside quotes
        // (in a comment column, which is dropped), CRLF records, a blank line, a byte order mark.
        let text = "\u{FEFF}\"a\",# note,\"b__0\",b__1\r\n"
            + "\"1.5\",\"has, comma and \"\"quotes\"\"\",2,3\r\n"
            + "\r\n"
            + "-2,\"two\r\nlines\",\" 4 \",5\r\n"
            + "0,,6,\"7\""
        let dir = try csvDir(["q.csv": text])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try CSVDataSource(path: dir + "/q.csv")
        #expect(s.variables == ["a", "b"])
        #expect(s.shapes == [[1], [2]])
        #expect(s.size == 3)
        #expect(try s.sample(0) == [[1.5], [2, 3]])
        #expect(try s.sample(1) == [[-2], [4, 5]])
        #expect(try s.sample(2) == [[0], [6, 7]])
    }

    @Test func parserKeepsQuotesNewlinesAndEmptyFields() throws {
        let r = try CSVReader.parse("a,\"b\"\"c\",\"d\ne\"\n\n1,2\r\n\"\"\n,\nx\"y,z", file: "t")
        #expect(r.map { $0.fields } == [["a", "b\"c", "d\ne"], ["1", "2"], [""], ["", ""], ["x\"y", "z"]])
        #expect(r.map { $0.line } == [1, 4, 5, 6, 7])
    }

    @Test func numbersAsPythonFloat() {
        #expect(CSVReader.number("1") == 1)
        #expect(CSVReader.number(" -2.5e1 ") == -25)
        #expect(CSVReader.number("+.5") == 0.5)
        #expect(CSVReader.number("5.") == 5)
        #expect(CSVReader.number("inf") == .infinity)
        #expect(CSVReader.number("-Infinity") == -.infinity)
        #expect(CSVReader.number("nan")?.isNaN == true)
        #expect(CSVReader.number("0.1") == Float(0.1))
        for bad in ["", " ", "a.csv", "1,2", "0x10", "1e", ".", "--1", "one"] {
            #expect(CSVReader.number(bad) == nil, "\(bad)")
        }
    }

    @Test func cellsReferencingTensorFiles() throws {
        let dir = try csvDir([
            "set/index.csv": "x:matrix,y\ntensors/a.csv,0\n\"tensors\\b.csv\",1\ntensors/a.csv,2\n",
            "set/tensors/a.csv": "1,2,3\n4,5,6\n",
            "set/tensors/b.csv": "-1,-2,-3\n\n\"-4\",-5,-6.5\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try CSVDataSource(path: dir + "/set/index.csv")
        #expect(s.shapes == [[2, 3], [1]])
        #expect(try s.sample(0) == [[1, 2, 3, 4, 5, 6], [0]])
        #expect(try s.sample(1) == [[-1, -2, -3, -4, -5, -6.5], [1]])
        #expect(try s.sample(2) == [[1, 2, 3, 4, 5, 6], [2]])
        // An absolute path works too.
        let abs = try csvDir(["i.csv": "x\n\(dir)/set/tensors/b.csv\n"])
        defer { try? FileManager.default.removeItem(atPath: abs) }
        let t = try CSVDataSource(path: abs + "/i.csv")
        #expect(t.shapes == [[2, 3]])
        #expect(try t.sample(0) == [[-1, -2, -3, -4, -5, -6.5]])
        // Through the iterator, batches stack the tensors.
        let it = try dataIteratorCSVDataset(path: dir + "/set/index.csv", batchSize: 2)
        #expect(it.sampleShapes == [[2, 3], [1]])
        #expect(try it.next()[0] == [1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6.5])
    }

    @Test func shuffledCSVIteratorSeesEveryRowOncePerEpoch() throws {
        var text = "i,v__0,v__1\n"
        for i in 0..<7 { text += "\(i),\(i * 2),\(i * 3)\n" }
        let dir = try csvDir(["d.csv": text])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try dataIteratorCSVDataset(path: dir + "/d.csv", batchSize: 7, shuffle: true, seed: 9)
        let b = try dataIteratorCSVDataset(path: dir + "/d.csv", batchSize: 7, shuffle: true, seed: 9)
        let batch = try a.next()
        #expect(batch[0].map { Int($0) }.sorted() == Array(0..<7))
        for (k, i) in batch[0].enumerated() { #expect(Array(batch[1][(2 * k)..<(2 * k + 2)]) == [2 * i, 3 * i]) }
        #expect(try b.next() == batch)
    }

    /// Each malformed file throws a KilnError whose message names what is needed to find the problem.
    @Test(arguments: [
        ("ragged row", ["d.csv": "x,y\n1,2\n3\n"], ["d.csv", "line 3", "data row 2", "1 fields"]),
        ("long row", ["d.csv": "x,y\n1,2,3\n"], ["d.csv", "line 2", "3 fields"]),
        ("not a number in a vector column", ["d.csv": "x__0,x__1\n1,2\n3,abc\n"], ["d.csv", "line 3", "column 2 'x__1'", "abc"]),
        ("missing referenced file", ["d.csv": "x\nnope.csv\n"], ["d.csv", "line 2", "column 1 'x'", "nope.csv"]),
        ("unsupported file type", ["d.csv": "x\nimage.png\n"], ["d.csv", "line 2", "column 1", "image.png"]),
        ("empty cell", ["d.csv": "x,y\n1,\n"], ["d.csv", "line 2", "column 2 'y'", "empty"]),
        ("unclosed quote", ["d.csv": "x,y\n1,\"2\n3,4\n"], ["d.csv", "line 2", "not closed"]),
        ("text after closing quote", ["d.csv": "x,y\n1,\"2\"x\n"], ["d.csv", "line 2", "field 2"]),
        ("no data rows", ["d.csv": "x,y\n"], ["d.csv", "no data rows"]),
        ("empty file", ["d.csv": ""], ["d.csv", "empty"]),
        ("shape changes between rows", ["d.csv": "x\n1\nt.csv\n", "t.csv": "1,2\n"], ["d.csv", "line 3", "column 1 'x'", "[1, 2]", "[1]"]),
        ("ragged referenced file", ["d.csv": "x\nt.csv\n", "t.csv": "1,2\n3\n"], ["d.csv", "line 2", "t.csv", "line 2"]),
        ("non-number in referenced file", ["d.csv": "x\nt.csv\n", "t.csv": "1,2\n3,z\n"], ["d.csv", "t.csv", "line 2, column 2", "'z'"]),
        ("empty referenced file", ["d.csv": "x\nt.csv\n", "t.csv": "\n"], ["d.csv", "t.csv", "no values"]),
        ("duplicate variable", ["d.csv": "x,x\n1,2\n"], ["d.csv", "column 2", "repeats"]),
        ("vector and scalar of one name", ["d.csv": "x__0,x\n1,2\n"], ["d.csv", "column 2", "with and without"]),
        ("empty header cell", ["d.csv": "x,,y\n1,2,3\n"], ["d.csv", "header column 2"]),
        ("only comments", ["d.csv": "#a,#b\n1,2\n"], ["d.csv", "no variable"]),
        ("file in a vector column", ["d.csv": "x__0,x__1\n1,t.csv\n", "t.csv": "1\n"], ["d.csv", "column 2", "not a number"]),
    ] as [(String, [String: String], [String])])
    func malformedInputThrows(_ name: String, _ files: [String: String], _ mentions: [String]) throws {
        let dir = try csvDir(files)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let message = kilnError { _ = try dataIteratorCSVDataset(path: dir + "/d.csv", batchSize: 1) }
        #expect(message != nil, "\(name): no KilnError")
        for m in mentions { #expect(message?.contains(m) == true, "\(name): '\(m)' not in: \(message ?? "-")") }
    }

    @Test func missingDatasetFileThrows() {
        #expect(throws: KilnError.self) { _ = try CSVDataSource(path: "/nonexistent/kiln/d.csv") }
    }

    /// A batch size of 2^40 asks for 2^40 x 4 floats x 4 bytes of batch buffers: refused against the budget
    /// before anything is allocated; one that overflows the integer range is refused naming the product.
    @Test func hugeBatchesAreRefusedBeforeAllocating() throws {
        let dir = try csvDir(["d.csv": "x__0,x__1,x__2,y\n1,2,3,0\n"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = #expect(throws: KilnError.self) { _ = try dataIteratorCSVDataset(path: dir + "/d.csv", batchSize: 1 << 40) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("one batch of 1099511627776 samples takes 17592186044416 bytes, above the memory budget"))
        let overflow = #expect(throws: KilnError.self) { _ = try dataIteratorCSVDataset(path: dir + "/d.csv", batchSize: Int.max / 2) }
        #expect("\(overflow.map { "\($0)" } ?? "")".contains("overflows"))
    }
}
