// Small, realistic HR-policy documents (simplified Chinese, traditional Chinese, English) shared by the KB tests.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { saveConfig } from "../core/config.js";

export const ZH_HANS = `# 员工手册

## 第一章 考勤

员工每天上班时间为上午九点至下午六点，午休一小时。迟到三次以上按旷工半天处理。

## 第二章 假期

### 年假

员工入职满一年后享受带薪年假五天，满十年享受十天，满二十年享受十五天。年假须提前一周通过OA系统申请。

### 病假

员工因病请假须提供二级以上医院出具的病假证明，病假期间工资按基本工资的百分之八十发放。

### 婚假

符合法定结婚年龄的员工可享受婚假三天，须在领证后一年内休完。

## 第三章 报销

出差住宿标准：一线城市每晚不超过五百元，其他城市每晚不超过三百五十元。报销须在出差结束后三十日内提交。
`;

export const ZH_HANT = `加班規定

員工加班須事先經部門主管核准，平日加班按時薪的一點三四倍計算加班費，休息日加班按一點六七倍計算。

育嬰留職停薪

任職滿六個月的員工，於每一子女滿三歲前，得申請育嬰留職停薪，期間最長不超過兩年。

資訊安全

公司電腦不得安裝未經授權的軟體，離開座位時須鎖定螢幕，密碼每九十天更換一次。
`;

export const EN = `# Employee Handbook

## Remote Work

Employees may work remotely up to two days per week with their manager's approval. Remote workers must be reachable during core hours from 10am to 4pm.

## Parental Leave

Primary caregivers receive sixteen weeks of paid parental leave. Secondary caregivers receive four weeks of paid leave.

## Expense Reimbursement

Submit receipts within 30 days of purchase. Meals during business travel are reimbursed up to $50 per day.
`;

/** Write the three documents into dir/policies and return that folder. */
export function writePolicies(dir: string): string {
  const p = join(dir, "policies");
  mkdirSync(p, { recursive: true });
  writeFileSync(join(p, "员工手册.md"), ZH_HANS);
  writeFileSync(join(p, "員工守則.txt"), ZH_HANT);
  writeFileSync(join(p, "handbook.md"), EN);
  return p;
}

/** Small chunks so each policy section is its own chunk (the test asserts which one ranks first). */
export function smallChunkConfig(home: string, extra: Record<string, unknown> = {}): void {
  saveConfig(home, { ingest: { chunkTokens: 60, chunkOverlap: 0, maxFileBytes: 64 * 1024 }, ...extra } as never);
}
