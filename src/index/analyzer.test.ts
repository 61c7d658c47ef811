import { describe, expect, it } from "vitest";
import { analyze, analyzeQuery, analyzerId, DEFAULT_ANALYZER, parseAnalyzerId } from "./analyzer.js";
import { porterStem } from "./stem.js";

describe("analyzer", () => {
  it("traditional and simplified Chinese produce the same terms", () => {
    expect(analyze("員工請假須提前三天向主管申請")).toEqual(analyze("员工请假须提前三天向主管申请"));
    expect(analyze("育嬰留職停薪")).toEqual(analyze("育婴留职停薪"));
  });

  it("search mode emits sub-words of long words, so a short query term matches", () => {
    const terms = analyze("中华人民共和国劳动合同法");
    expect(terms).toEqual(expect.arrayContaining(["中华人民共和国", "人民", "共和国", "劳动", "合同", "合同法"]));
  });

  it("folds full-width forms and case, splits on punctuation, drops function words", () => {
    expect(analyze("ＯＡ系统，ＡＢＣ１２３！")).toEqual(["oa", "系统", "abc123"]);
    expect(analyze("年假是多少天？")).not.toContain("是");
    expect(analyze("The policies of the company")).toEqual(["polici", "compani"]);
  });

  it("Porter stemming joins inflected forms", () => {
    for (const [a, b] of [
      ["reimbursement", "reimbursed"],
      ["policies", "policy"],
      ["working", "works"],
      ["caregivers", "caregiver"],
    ]) {
      expect(porterStem(a)).toBe(porterStem(b));
    }
    expect(porterStem("relational")).toBe("relat");
    expect(porterStem("hopping")).toBe("hop");
    expect(porterStem("sky")).toBe("sky");
  });

  it("query terms are the same analysis, deduplicated", () => {
    expect(analyzeQuery("leave leave LEAVE")).toEqual(["leav"]);
    expect(analyzeQuery("婚假 婚假 leave")).toEqual([...new Set(analyze("婚假 leave"))]);
  });

  it("options are fingerprinted and round-trip", () => {
    const o = { ...DEFAULT_ANALYZER, toSimplified: false, cjkUnigrams: true };
    expect(parseAnalyzerId(analyzerId(o))).toEqual(o);
    expect(analyzerId(o)).not.toBe(analyzerId(DEFAULT_ANALYZER));
    expect(analyze("員工", o)).toEqual(expect.arrayContaining(["員", "工"]));
  });
});
